-- 000010_rename_attempts_pkey: 000005 renamed the tables but PostgreSQL kept
-- the primary keys' names; renaming the index renames its constraint too.
ALTER INDEX IF EXISTS deliveries_pkey RENAME TO attempts_pkey;
ALTER INDEX IF EXISTS deliveries_default_pkey RENAME TO attempts_default_pkey;

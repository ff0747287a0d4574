DROP TABLE IF EXISTS {deployment_prefix}attempts;
DROP TABLE IF EXISTS {deployment_prefix}events;

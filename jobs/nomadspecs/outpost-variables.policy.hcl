# ACL policy that lets the migration jobs read the Outpost settings kept at
# nomad/jobs/outpost (a job reads nomad/jobs/<its own id> without a policy;
# the migration jobs have other ids). Attach it to each migration job:
#
#   nomad acl policy apply -namespace default -job outpost-migrate \
#     outpost-migrate-vars outpost-variables.policy.hcl
#   nomad acl policy apply -namespace default -job outpost-migrate-param \
#     outpost-migrate-param-vars outpost-variables.policy.hcl

namespace "default" {
  variables {
    path "nomad/jobs/outpost" {
      capabilities = ["read"]
    }
  }
}

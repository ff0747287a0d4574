# One-shot batch job: `outpost migrate apply --yes`.
#
#   nomad var put nomad/jobs/outpost REDIS_HOST=redis.service.consul REDIS_PASSWORD=... POSTGRES_URL=...
#   nomad acl policy apply -namespace default -job outpost-migrate outpost-migrate-vars outpost-variables.policy.hcl
#   nomad job run -var migrate_image=registry.example.com/outpost-migrate:v0.1.0 migrate-apply.nomad.hcl
#
# or, waiting for the result and exiting with the task's exit code:
#
#   outpost jobs nomad run --job migrate-apply --timeout 90m
#
# Nomad counts every non-zero exit of a batch task as a failure and by default
# restarts and reschedules it. Retrying a migration blindly is wrong (exit 3, 4,
# 64, 65, 70, 77, 78 will fail again), so restart and reschedule attempts are 0
# and the waiting that is worth doing (a busy lock) happens inside the tool
# (--lock-timeout). The caller decides on a rerun from the exit code.
#
# How long one run can take, and why (Nomad gives a batch task no deadline of
# its own, so the bound comes from the tool; the caller's deadline, e.g.
# `outpost jobs nomad run --timeout`, must exceed it: 90m does):
#   --wait-for 2m      a store that restarts or fails over is waited for
#                      inside the tool (each store in turn: up to 2 x 2m)
#                      rather than failing a job Nomad will not restart;
#   --lock-timeout 10m a run that holds the lock is waited for (the Redis
#                      lease, then PostgreSQL's advisory lock: up to 2 x 10m);
#   --max-runtime 1h   then the run stops at a safe point with its progress
#                      saved (exit 75); rerunning the job resumes it;
#   kill_timeout 90s   the time to reach that safe point on SIGTERM.
#   Longest run: 2 x 2m + 2 x 10m + 1h + 90s = 85.5m.

variable "migrate_image" {
  type        = string
  default     = "outpost-migrate:latest"
  description = "The outpost-migrate image (this repository's Dockerfile, not hookdeck/outpost); pin a release: -var migrate_image=REGISTRY/outpost-migrate:v0.1.0."
}

variable "datacenters" {
  type    = list(string)
  default = ["*"]
}

variable "config_path" {
  type        = string
  default     = "nomad/jobs/outpost"
  description = "Nomad Variables path whose items become the task's environment (REDIS_HOST, POSTGRES_URL, ...)."
}

job "outpost-migrate" {
  type        = "batch"
  datacenters = var.datacenters

  meta {
    outpost_recipe = "migrate-apply"
  }

  group "migrate" {
    count = 1

    restart {
      attempts = 0
      mode     = "fail"
    }

    reschedule {
      attempts  = 0
      unlimited = false
    }

    task "migrate" {
      driver = "docker"

      # On SIGTERM (nomad job stop, node drain) the tool stops at the next safe
      # point, saves its checkpoint and releases the lock. Give it the time to
      # do so; the Nomad client caps this at its max_kill_timeout (30s unless
      # raised in the client configuration).
      kill_signal  = "SIGTERM"
      kill_timeout = "90s"

      config {
        image = var.migrate_image
        args  = ["migrate", "apply", "--yes", "--wait-for", "2m", "--lock-timeout", "10m", "--max-runtime", "1h", "--output", "json"]
      }

      template {
        destination = "secrets/outpost.env"
        env         = true
        change_mode = "noop"
        data        = <<EOT
{{ with nomadVar "${var.config_path}" }}{{ range $k, $v := . }}{{ $k }}={{ $v }}
{{ end }}{{ end }}
EOT
      }

      resources {
        cpu    = 200
        memory = 256
      }
    }
  }
}

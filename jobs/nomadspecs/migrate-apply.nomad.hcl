# One-shot batch job: `outpost migrate apply --yes`.
#
#   nomad var put nomad/jobs/outpost REDIS_HOST=redis.service.consul REDIS_PASSWORD=... POSTGRES_URL=...
#   nomad acl policy apply -namespace default -job outpost-migrate outpost-migrate-vars outpost-variables.policy.hcl
#   nomad job run -var image=hookdeck/outpost:v0.17.0 migrate-apply.nomad.hcl
#
# or, waiting for the result and exiting with the task's exit code:
#
#   outpost jobs nomad run --job migrate-apply
#
# Nomad counts every non-zero exit of a batch task as a failure and by default
# restarts and reschedules it. Retrying a migration blindly is wrong (exit 3, 4,
# 64, 65, 70, 77, 78 will fail again), so restart and reschedule attempts are 0
# and the waiting that is worth doing (a busy lock) happens inside the tool
# (--lock-timeout). The caller decides on a rerun from the exit code.

variable "image" {
  type        = string
  default     = "hookdeck/outpost:latest"
  description = "The Outpost image; use the same tag as the Outpost servers you are about to start."
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
        image = var.image
        args  = ["migrate", "apply", "--yes", "--lock-timeout", "10m", "--output", "json"]
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

# Parameterized batch job: one registration, one dispatch per command.
#
#   nomad job run migrate-param.nomad.hcl
#   nomad job dispatch -meta command=plan outpost-migrate-param
#   nomad job dispatch -meta command=apply -meta lock_timeout=30m -meta max_runtime=2h outpost-migrate-param
#
# or, waiting for the result and exiting with the task's exit code:
#
#   outpost jobs nomad run --job migrate-param --meta command=verify --timeout 90m
#
# command is one of plan, apply, verify, status, unlock. --yes is passed to
# every command (apply and unlock need it: a batch task has no terminal).
#
# The bounds, as in migrate-apply.nomad.hcl (Nomad gives a batch task no
# deadline; the caller's, e.g. `outpost jobs nomad run --timeout`, must exceed
# 2 x wait-for + 2 x lock_timeout + max_runtime + kill_timeout, 85.5m with the
# defaults): --wait-for 2m waits for a store that restarts; lock_timeout
# (default 10m) for a busy lock; max_runtime (default 1h) stops apply, verify
# and cleanup at a safe point with progress saved (exit 75, a rerun resumes);
# plan, status and unlock ignore it.

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
  description = "Nomad Variables path whose items become the task's environment."
}

job "outpost-migrate-param" {
  type        = "batch"
  datacenters = var.datacenters

  parameterized {
    payload       = "forbidden"
    meta_required = ["command"]
    meta_optional = ["lock_timeout", "max_runtime"]
  }

  # Defaults for the optional dispatch meta.
  meta {
    lock_timeout = "10m"
    max_runtime  = "1h"
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
      driver       = "docker"
      kill_signal  = "SIGTERM"
      kill_timeout = "90s"

      config {
        image = var.migrate_image
        args  = ["migrate", "${NOMAD_META_command}", "--yes", "--wait-for", "2m", "--lock-timeout", "${NOMAD_META_lock_timeout}", "--max-runtime", "${NOMAD_META_max_runtime}", "--output", "json"]
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

# Parameterized batch job: one registration, one dispatch per command.
#
#   nomad job run migrate-param.nomad.hcl
#   nomad job dispatch -meta command=plan outpost-migrate-param
#   nomad job dispatch -meta command=apply -meta lock_timeout=30m outpost-migrate-param
#
# or, waiting for the result and exiting with the task's exit code:
#
#   outpost jobs nomad run --job migrate-param --meta command=verify
#
# command is one of plan, apply, verify, status, unlock. --yes is passed to
# every command (apply and unlock need it: a batch task has no terminal).

variable "image" {
  type        = string
  default     = "hookdeck/outpost:latest"
  description = "The Outpost image; use the same tag as the Outpost servers."
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
    meta_optional = ["lock_timeout"]
  }

  # Defaults for the optional dispatch meta.
  meta {
    lock_timeout = "10m"
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
        image = var.image
        args  = ["migrate", "${NOMAD_META_command}", "--yes", "--lock-timeout", "${NOMAD_META_lock_timeout}", "--output", "json"]
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

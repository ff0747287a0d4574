# Outpost as a service job whose group runs the migration first: the
# prestart task must exit 0 before Nomad starts `serve` in the same
# allocation, which is the guide's rule ("migrate apply completes before
# outpost serve starts") on every deploy and every reschedule.
#
#   nomad var put nomad/jobs/outpost REDIS_HOST=... REDIS_PASSWORD=... POSTGRES_URL=...
#   nomad job run -var migrate_image=registry.example.com/outpost-migrate:v0.1.0 \
#     -var outpost_image=hookdeck/outpost:v0.17.0 outpost-service.nomad.hcl
#
# The job is called "outpost", so its tasks read nomad/jobs/outpost without an
# extra ACL policy. With count > 1 every allocation runs the prestart task;
# the migration lock lets one apply and the others wait (--lock-timeout) and
# then find nothing to do.
#
# Two images: the migration runs from outpost-migrate (this repository's
# Dockerfile, `outpost migrate ...`), the server from Outpost's own
# hookdeck/outpost (`outpost serve`, which this tool's image does not have).

variable "migrate_image" {
  type        = string
  default     = "outpost-migrate:latest"
  description = "The outpost-migrate image (this repository's Dockerfile) for the prestart task; pin a release."
}

variable "outpost_image" {
  type        = string
  default     = "hookdeck/outpost:v0.17.0"
  description = "Outpost's own image, for `serve`; the release whose storage the migration prepares."
}

variable "datacenters" {
  type    = list(string)
  default = ["*"]
}

variable "config_path" {
  type        = string
  default     = "nomad/jobs/outpost"
  description = "Nomad Variables path whose items become the tasks' environment."
}

job "outpost" {
  type        = "service"
  datacenters = var.datacenters

  group "outpost" {
    count = 1

    network {
      port "http" {
        to = 3333
      }
    }

    service {
      name     = "outpost"
      port     = "http"
      provider = "nomad"
    }

    # A failed migration is not restarted in place (attempts 0 on the task);
    # the allocation fails and the group's reschedule policy tries again later
    # with a growing delay.
    reschedule {
      delay          = "30s"
      delay_function = "exponential"
      max_delay      = "10m"
      unlimited      = true
    }

    # The prestart migration counts against the allocation's health: it must
    # be healthy within healthy_deadline, or the deployment fails it. The
    # migrate task's bounds fit inside: 2 x 2m (--wait-for, each store) +
    # 2 x 10m (--lock-timeout, the Redis lease and the PostgreSQL advisory
    # lock; other allocations wait while one applies) + 20m (--max-runtime:
    # then it stops at a safe point, exit 75, and the reschedule resumes it)
    # + 90s (kill_timeout) = 45.5m < 50m. progress_deadline must exceed
    # healthy_deadline.
    update {
      healthy_deadline  = "50m"
      progress_deadline = "1h"
    }

    task "migrate" {
      lifecycle {
        hook    = "prestart"
        sidecar = false
      }

      driver       = "docker"
      kill_signal  = "SIGTERM"
      kill_timeout = "90s"

      restart {
        attempts = 0
        mode     = "fail"
      }

      config {
        image = var.migrate_image
        args  = ["migrate", "apply", "--yes", "--wait-for", "2m", "--lock-timeout", "10m", "--max-runtime", "20m", "--output", "json"]
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

    task "serve" {
      driver       = "docker"
      kill_signal  = "SIGTERM"
      kill_timeout = "30s"

      config {
        image = var.outpost_image
        args  = ["serve"]
        ports = ["http"]
      }

      template {
        destination = "secrets/outpost.env"
        env         = true
        change_mode = "restart"
        data        = <<EOT
{{ with nomadVar "${var.config_path}" }}{{ range $k, $v := . }}{{ $k }}={{ $v }}
{{ end }}{{ end }}
EOT
      }

      resources {
        cpu    = 500
        memory = 512
      }
    }
  }
}

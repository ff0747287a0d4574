# Outpost as a service job whose group runs the migration first: the
# prestart task must exit 0 before Nomad starts `serve` in the same
# allocation, which is the guide's rule ("migrate apply completes before
# outpost serve starts") on every deploy and every reschedule.
#
#   nomad var put nomad/jobs/outpost REDIS_HOST=... REDIS_PASSWORD=... POSTGRES_URL=...
#   nomad job run -var image=hookdeck/outpost:v0.17.0 outpost-service.nomad.hcl
#
# The job is called "outpost", so its tasks read nomad/jobs/outpost without an
# extra ACL policy. With count > 1 every allocation runs the prestart task;
# the migration lock lets one apply and the others wait (--lock-timeout) and
# then find nothing to do.

variable "image" {
  type        = string
  default     = "hookdeck/outpost:latest"
  description = "The Outpost image, for both the migration and the server."
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

    task "serve" {
      driver       = "docker"
      kill_signal  = "SIGTERM"
      kill_timeout = "30s"

      config {
        image = var.image
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

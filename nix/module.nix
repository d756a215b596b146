# NixOS module: services.plex-oidc.
#
# The systemd unit, credentials, hardening and the rendered settings come from ./service.nix, a pure
# function CI evaluates without nixpkgs; this file declares the options and wires the result in.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib)
    literalExpression
    mkEnableOption
    mkIf
    mkMerge
    mkOption
    optional
    types
    ;

  cfg = config.services.plex-oidc;
  format = pkgs.formats.json { };

  svc = import ./service.nix {
    exe = lib.getExe cfg.package;
    killExe = "${pkgs.coreutils}/bin/kill";
    configFile = checkedConfig;
    inherit (cfg) settings clientSecretFiles;
  };

  renderedConfig = format.generate "plex-oidc-config.json" svc.settings;

  # Like authelia's validate-config: a configuration the binary rejects fails the rebuild, not the boot.
  checkedConfig =
    if cfg.checkConfig then
      pkgs.runCommand "plex-oidc-config.json"
        {
          credentials = svc.credentialNames;
          preferLocalBuild = true;
        }
        ''
          # The real secrets only exist at run time; stand in for each credential with a placeholder.
          export CREDENTIALS_DIRECTORY="$(mktemp -d)"
          for name in $credentials; do
            (umask 077; printf '%s' build-time-placeholder-secret > "$CREDENTIALS_DIRECTORY/$name")
          done
          ${lib.getExe cfg.package} check --config ${renderedConfig}
          cp ${renderedConfig} "$out"
        ''
    else
      renderedConfig;

  dashboards = pkgs.linkFarm "plex-oidc-grafana-dashboards" [
    {
      name = "plex-oidc.json";
      path = ../examples/observability/plex-oidc-dashboard.json;
    }
  ];

  stateDir = "/var/lib/plex-oidc";
in
{
  options.services.plex-oidc = {
    enable = mkEnableOption "plex-oidc, an OpenID Connect provider that signs people in with their Plex account";

    package = mkOption {
      type = types.package;
      # Without this flake's overlay, build the package from the same checkout as this module.
      default = pkgs.plex-oidc or (pkgs.callPackage ./package.nix { });
      defaultText = literalExpression "pkgs.plex-oidc or (pkgs.callPackage ./nix/package.nix { })";
      description = "The plex-oidc package to run.";
    };

    settings = mkOption {
      description = ''
        Configuration written to `config.json` (see `plex-oidc schema` for every key and its default).
        It lands in the world-readable Nix store: give client secrets with
        [](#opt-services.plex-oidc.clientSecretFiles) or as `client_secret_hash`, never as `client_secret`.
      '';
      default = { };
      example = literalExpression ''
        {
          issuer = "https://auth.example.com";
          plex = {
            server_id = "0123456789abcdef0123456789abcdef01234567";
            server_name = "Media";
          };
          clients = [
            {
              client_id = "grafana";
              name = "Grafana";
              redirect_uris = [ "https://grafana.example.com/login/generic_oauth" ];
            }
          ];
        }
      '';
      type = types.submodule {
        freeformType = format.type;
        options = {
          issuer = mkOption {
            type = types.str;
            example = "https://auth.example.com";
            description = ''
              Public URL of this provider, published exactly as written (relying parties compare it byte for
              byte, so mind the trailing slash). Must be https unless the host is loopback.
            '';
          };

          listen = mkOption {
            type = types.str;
            default = "127.0.0.1:8080";
            example = "0.0.0.0:8080";
            description = ''
              Socket address of the HTTP listener. The default suits a TLS-terminating reverse proxy on the
              same host; listen on all addresses and set [](#opt-services.plex-oidc.openFirewall) to expose it.
            '';
          };

          state_dir = mkOption {
            type = types.str;
            default = stateDir;
            readOnly = true;
            description = "Signing keys and stores; systemd creates it (`StateDirectory`) for the dynamic user.";
          };

          plex = mkOption {
            default = { };
            description = "How to reach Plex, and whose server decides who may sign in.";
            type = types.submodule {
              freeformType = format.type;
              options = {
                server_id = mkOption {
                  type = types.str;
                  example = "0123456789abcdef0123456789abcdef01234567";
                  description = ''
                    The `machineIdentifier` of your Plex Media Server (`curl -s http://PMS:32400/identity`).
                    Only accounts that this server is shared with, or that own it, can sign in.
                  '';
                };
                server_name = mkOption {
                  type = types.nullOr types.str;
                  default = null;
                  description = "Name of the server shown on the sign-in page.";
                };
              };
            };
          };

          clients = mkOption {
            default = [ ];
            description = ''
              The relying parties. Each needs exactly one of a secret file
              ([](#opt-services.plex-oidc.clientSecretFiles)), `client_secret_hash` or `public = true`.
            '';
            type = types.listOf (
              types.submodule {
                freeformType = format.type;
                options = {
                  client_id = mkOption {
                    type = types.strMatching "[A-Za-z0-9._~-]{1,128}";
                    description = "The client identifier the application is configured with.";
                  };
                  name = mkOption {
                    type = types.nullOr types.str;
                    default = null;
                    description = "Name of the application shown on the sign-in page.";
                  };
                  redirect_uris = mkOption {
                    type = types.nonEmptyListOf types.str;
                    description = "Exact redirect URIs the application may use.";
                  };
                };
              }
            );
          };

          metrics = mkOption {
            default = { };
            description = "Prometheus metrics.";
            type = types.submodule {
              freeformType = format.type;
              options.listen = mkOption {
                type = types.nullOr types.str;
                default = null;
                example = "127.0.0.1:9090";
                description = "Serve `/metrics` on this separate address instead of the main listener.";
              };
            };
          };
        };
      };
    };

    clientSecretFiles = mkOption {
      type = types.attrsOf types.str;
      default = { };
      example = {
        grafana = "/run/secrets/plex-oidc/grafana";
      };
      description = ''
        Per client_id, a file holding that client's secret (for example from sops-nix or agenix). The file
        stays outside the Nix store and may be readable by root only: systemd hands the service a copy
        with `LoadCredential`, and the client's `client_secret_file` is set to it. Create one with
        `plex-oidc hash-secret --generate`.
      '';
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Whether to open the TCP port of [](#opt-services.plex-oidc.settings.listen) in the firewall.";
    };

    checkConfig = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Whether to run `plex-oidc check` on the rendered configuration at build time. Turn it off when the
        configuration names files that only exist at run time, such as a `theme.dir` outside the store.
      '';
    };

    prometheus.enable = mkEnableOption "a scrape job for plex-oidc in this host's {option}`services.prometheus.scrapeConfigs`, and its alerting rules (examples/observability/alerts.yml) in {option}`services.prometheus.ruleFiles`";

    grafanaDashboard.enable = mkEnableOption "provisioning the plex-oidc dashboard into this host's Grafana";
  };

  config = mkIf cfg.enable (mkMerge [
    {
      assertions = svc.assertions;
      warnings =
        svc.warnings
        ++ optional (cfg.openFirewall && svc.listenIsLoopback) "services.plex-oidc.openFirewall has no effect while settings.listen (${cfg.settings.listen}) is a loopback address.";

      environment.systemPackages = [ cfg.package ];

      systemd.services.plex-oidc = svc.service // {
        restartTriggers = [
          cfg.package
          checkedConfig
        ];
      };

      networking.firewall.allowedTCPPorts = optional (cfg.openFirewall && svc.port != null) svc.port;
    }
    (mkIf cfg.prometheus.enable {
      services.prometheus.scrapeConfigs = [
        {
          job_name = "plex-oidc";
          static_configs = [ { targets = [ svc.scrapeTarget ]; } ];
        }
      ];
      services.prometheus.ruleFiles = [ ../examples/observability/alerts.yml ];
    })
    (mkIf cfg.grafanaDashboard.enable {
      services.grafana.provision = {
        enable = true;
        dashboards.settings.providers = [
          {
            name = "plex-oidc";
            options.path = dashboards;
          }
        ];
      };
    })
  ]);
}

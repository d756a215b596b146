# Evaluates nix/module.nix with nixpkgs' real module system (lib only) next to stand-ins for the few
# NixOS options it sets, and asserts the resulting systemd service, firewall, Prometheus and Grafana
# wiring. It also evaluates the NixOS VM test's machine configuration (nix/tests/vm.nix).
#
# nixpkgs' lib/ is small but cannot be fetched offline; point this at any checkout of it:
#
#   nix-instantiate --eval --read-write-mode --strict --json nix/tests/module-eval.nix \
#     --arg lib 'import /path/to/nixpkgs/lib'
#
# (--read-write-mode: the stand-in for pkgs.formats.json writes the rendered file with builtins.toFile.)
#
# .ci/nix-checks.sh runs it when PLEX_OIDC_NIXPKGS_LIB names such a directory.
{ lib }:
let
  inherit (lib) mkOption types;

  fakeDrv = name: main: {
    type = "derivation";
    inherit name;
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
    meta.mainProgram = main;
  };
  plex-oidc = fakeDrv "plex-oidc-0.1.0" "plex-oidc";
  fake-plex = fakeDrv "fake-plex-0.1.0" "fake-plex";

  # nixpkgs' pkgs.formats.json and the builders the module calls; builders return what they were given.
  jsonType =
    let
      valueType =
        types.nullOr (
          types.oneOf [
            types.bool
            types.int
            types.float
            types.str
            types.path
            (types.attrsOf valueType)
            (types.listOf valueType)
          ]
        )
        // {
          description = "JSON value";
        };
    in
    valueType;
  pkgs = {
    inherit lib;
    formats.json = _: {
      type = jsonType;
      generate = name: value: {
        inherit name value;
        outPath = builtins.toFile name (builtins.toJSON value);
      };
    };
    runCommand = name: env: script: {
      inherit name env script;
      outPath = "/nix/store/11111111111111111111111111111111-${name}";
    };
    linkFarm = name: entries: {
      inherit name entries;
      outPath = "/nix/store/22222222222222222222222222222222-${name}";
    };
    curl = fakeDrv "curl" "curl";
    jq = fakeDrv "jq" "jq";
  };

  # The NixOS options module.nix and the VM test's node set, reduced to what they accept.
  nixosStandIns = {
    options = {
      assertions = mkOption {
        type = types.listOf types.unspecified;
        default = [ ];
      };
      warnings = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      environment.systemPackages = mkOption {
        type = types.listOf types.package;
        default = [ ];
      };
      networking.firewall.allowedTCPPorts = mkOption {
        type = types.listOf types.port;
        default = [ ];
      };
      systemd.services = mkOption {
        type = types.attrsOf (types.submodule { freeformType = types.attrsOf types.anything; });
        default = { };
      };
      systemd.tmpfiles.rules = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      services.prometheus.scrapeConfigs = mkOption {
        type = types.listOf types.anything;
        default = [ ];
      };
      services.grafana.provision = mkOption {
        type = types.attrsOf types.anything;
        default = { };
      };
    };
  };

  eval =
    modules:
    (lib.evalModules {
      specialArgs = {
        inherit pkgs;
      };
      modules = [
        nixosStandIns
        ../module.nix
      ]
      ++ modules;
    }).config;

  base = {
    services.plex-oidc = {
      enable = true;
      package = plex-oidc;
      settings = {
        issuer = "https://auth.example.com";
        plex.server_id = "0123456789abcdef0123456789abcdef01234567";
        clients = [
          {
            client_id = "grafana";
            redirect_uris = [ "https://grafana.example.com/login/generic_oauth" ];
          }
          {
            client_id = "immich-mobile";
            public = true;
            redirect_uris = [ "app.immich:///oauth-callback" ];
          }
        ];
      };
      clientSecretFiles.grafana = "/run/secrets/plex-oidc/grafana";
    };
  };

  cfg = eval [ base ];
  unit = cfg.systemd.services.plex-oidc;
  checked = builtins.elemAt unit.restartTriggers 1;
  rendered = builtins.fromJSON (builtins.readFile renderedFile);
  renderedFile =
    let
      m = builtins.match ".* check --config ([^ \n]+).*" checked.script;
    in
    if m == null then throw "no `check --config` in the config check" else builtins.head m;

  exposed = eval [
    base
    {
      services.plex-oidc = {
        openFirewall = true;
        settings.listen = "0.0.0.0:8080";
        settings.metrics.listen = "127.0.0.1:9090";
        prometheus.enable = true;
        grafanaDashboard.enable = true;
      };
    }
  ];
  loopbackFirewall = eval [
    base
    { services.plex-oidc.openFirewall = true; }
  ];
  unchecked = eval [
    base
    { services.plex-oidc.checkConfig = false; }
  ];
  disabled = eval [ { services.plex-oidc.settings.issuer = "https://auth.example.com"; } ];
  movedStateDir = eval [
    base
    { services.plex-oidc.settings.state_dir = "/srv/plex-oidc"; }
  ];

  # The VM test's machine, evaluated through the same module.
  vmTest = import ./vm.nix {
    pkgs = pkgs // {
      testers.runNixOSTest = args: args;
    };
    module = ../module.nix;
    inherit plex-oidc fake-plex;
  };
  vmNode = vmTest.nodes.machine { inherit pkgs; };
  vm = eval [ (builtins.removeAttrs vmNode [ "imports" ]) ];
  vmUnit = vm.systemd.services.plex-oidc;
  vmRendered = builtins.fromJSON (
    builtins.readFile (builtins.head (builtins.match ".* check --config ([^ \n]+).*" (builtins.elemAt vmUnit.restartTriggers 1).script))
  );

  failedAssertions = c: map (a: a.message) (builtins.filter (a: !a.assertion) c.assertions);

  checks = [
    {
      name = "the service runs the package with the checked config";
      ok = unit.serviceConfig.ExecStart == "${plex-oidc}/bin/plex-oidc serve --config ${checked}";
    }
    {
      name = "the config check runs `plex-oidc check` with a placeholder for each credential";
      ok =
        builtins.match ".*/bin/plex-oidc check --config .*" checked.script != null
        && checked.env.credentials == [ "client-grafana" ];
    }
    {
      name = "checkConfig = false uses the rendered file directly";
      ok = builtins.match ".*plex-oidc-config.json" unchecked.systemd.services.plex-oidc.serviceConfig.ExecStart != null
        && (builtins.elemAt unchecked.systemd.services.plex-oidc.restartTriggers 1) ? value;
    }
    {
      name = "the rendered config has defaults, the credential name and no nulls";
      ok =
        rendered.listen == "127.0.0.1:8080"
        && rendered.state_dir == "/var/lib/plex-oidc"
        && rendered.clients == [
          {
            client_id = "grafana";
            client_secret_file = "client-grafana";
            redirect_uris = [ "https://grafana.example.com/login/generic_oauth" ];
          }
          {
            client_id = "immich-mobile";
            public = true;
            redirect_uris = [ "app.immich:///oauth-callback" ];
          }
        ]
        && rendered.plex == { server_id = "0123456789abcdef0123456789abcdef01234567"; }
        && rendered.metrics == { };
    }
    {
      name = "the secret file reaches systemd as a credential";
      ok = unit.serviceConfig.LoadCredential == [ "client-grafana:/run/secrets/plex-oidc/grafana" ];
    }
    {
      name = "a correct configuration raises no assertion or warning";
      ok = failedAssertions cfg == [ ] && cfg.warnings == [ ];
    }
    {
      name = "the package is installed for `plex-oidc check` and `hash-secret`";
      ok = cfg.environment.systemPackages == [ plex-oidc ];
    }
    {
      name = "the firewall stays closed by default";
      ok = cfg.networking.firewall.allowedTCPPorts == [ ];
    }
    {
      name = "openFirewall opens the listen port";
      ok = exposed.networking.firewall.allowedTCPPorts == [ 8080 ];
    }
    {
      name = "openFirewall on a loopback listener warns";
      ok = builtins.length loopbackFirewall.warnings == 1;
    }
    {
      name = "Prometheus scrapes the metrics listener";
      ok =
        exposed.services.prometheus.scrapeConfigs == [
          {
            job_name = "plex-oidc";
            static_configs = [ { targets = [ "127.0.0.1:9090" ]; } ];
          }
        ];
    }
    {
      name = "the Grafana dashboard is provisioned from examples/observability";
      ok =
        let
          provider = builtins.head exposed.services.grafana.provision.dashboards.settings.providers;
        in
        exposed.services.grafana.provision.enable
        && provider.name == "plex-oidc"
        && (builtins.head provider.options.path.entries).name == "plex-oidc.json";
    }
    {
      name = "nothing is configured while the service is disabled";
      ok = disabled.systemd.services == { } && disabled.assertions == [ ] && disabled.environment.systemPackages == [ ];
    }
    {
      name = "state_dir is read-only";
      ok = !(builtins.tryEval (builtins.deepSeq movedStateDir.services.plex-oidc.settings.state_dir null)).success;
    }
    {
      name = "the VM test's machine passes the module's assertions";
      ok = failedAssertions vm == [ ] && vm.warnings == [ ];
    }
    {
      name = "the VM test points plex-oidc at the fake plex.tv with a loopback issuer";
      ok =
        vmRendered.plex.api_url == "http://127.0.0.1:9999"
        && vmRendered.issuer == "http://localhost:8080"
        && vmRendered.clients == [
          {
            client_id = "grafana";
            name = "Grafana";
            client_secret_file = "client-grafana";
            redirect_uris = [ "http://localhost:3000/login/generic_oauth" ];
          }
        ]
        && vm.systemd.services.fake-plex.serviceConfig.ExecStart == "${fake-plex}/bin/fake-plex --listen 127.0.0.1:9999";
    }
  ];
  failed = builtins.filter (c: !c.ok) checks;
in
if failed != [ ] then
  throw "module-eval: ${toString (builtins.length failed)} of ${toString (builtins.length checks)} checks failed:\n  - ${builtins.concatStringsSep "\n  - " (map (c: c.name) failed)}"
else
  {
    passed = builtins.length checks;
    checks = map (c: c.name) checks;
    inherit rendered vmRendered;
  }

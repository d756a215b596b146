# Assertions on nix/service.nix, the pure function behind services.plex-oidc. Builtins only, so it runs
# without nixpkgs:
#
#   nix-instantiate --eval --strict --json nix/tests/service-unit.nix
#
# Prints { passed = N; ... } on success and throws, naming every failed check, otherwise.
# The flake's `checks.<system>.service-unit` evaluates the same file.
let
  inherit (builtins)
    all
    any
    attrNames
    attrValues
    concatStringsSep
    elem
    filter
    head
    isAttrs
    isList
    length
    map
    match
    split
    ;

  service = import ../service.nix;
  settings = import ./example-settings.nix;
  exe = "/nix/store/00000000000000000000000000000000-plex-oidc-0.1.0/bin/plex-oidc";
  configFile = "/nix/store/11111111111111111111111111111111-plex-oidc-config.json";
  eval =
    args:
    service (
      {
        inherit exe configFile settings;
        clientSecretFiles = {
          grafana = "/run/secrets/plex-oidc/grafana";
        };
      }
      // args
    );

  svc = eval { };
  sc = svc.service.serviceConfig;
  grafana = head svc.settings.clients;
  immich = builtins.elemAt svc.settings.clients 1;

  # The allow-list: "Section.Name" lines of systemd-directives.txt.
  directiveLines = filter (l: builtins.isString l && l != "" && match "#.*" l == null) (
    split "\n" (builtins.readFile ./systemd-directives.txt)
  );
  unitDirectives =
    unit:
    map (n: "Unit.${n}") [
      "Description"
      "After"
      "Wants"
    ]
    ++ map (n: "Service.${n}") (attrNames unit.serviceConfig)
    ++ [ "Install.WantedBy" ];
  unknownDirectives = unit: filter (d: !(elem d directiveLines)) (unitDirectives unit);

  hasNull =
    v:
    if v == null then
      true
    else if isAttrs v then
      any hasNull (attrValues v)
    else if isList v then
      any hasNull v
    else
      false;

  failing = s: map (a: a.message) (filter (a: !a.assertion) s.assertions);
  failsWith =
    s: pattern: any (m: match ".*${pattern}.*" m != null) (failing s);

  # The hardening set nixpkgs' security services use (see shared NIX.md), for an unprivileged port.
  expectedHardening = {
    DynamicUser = true;
    StateDirectory = "plex-oidc";
    StateDirectoryMode = "0700";
    CapabilityBoundingSet = "";
    AmbientCapabilities = "";
    NoNewPrivileges = true;
    PrivateTmp = true;
    PrivateDevices = true;
    DeviceAllow = "";
    PrivateUsers = true;
    ProtectSystem = "strict";
    ProtectHome = true;
    ProtectClock = true;
    ProtectControlGroups = true;
    ProtectHostname = true;
    ProtectKernelLogs = true;
    ProtectKernelModules = true;
    ProtectKernelTunables = true;
    ProtectProc = "invisible";
    ProcSubset = "pid";
    LockPersonality = true;
    MemoryDenyWriteExecute = true;
    RestrictAddressFamilies = [
      "AF_INET"
      "AF_INET6"
      "AF_UNIX"
    ];
    RestrictNamespaces = true;
    RestrictRealtime = true;
    RestrictSUIDSGID = true;
    SystemCallArchitectures = "native";
    SystemCallFilter = [
      "@system-service"
      "~@privileged"
    ];
    UMask = "0077";
  };
  hardeningMismatches = filter (k: !(sc ? ${k}) || sc.${k} != expectedHardening.${k}) (
    attrNames expectedHardening
  );

  privileged = eval { settings = settings // { listen = "0.0.0.0:443"; }; };
  privilegedMetrics = eval {
    settings = settings // {
      metrics.listen = "127.0.0.1:90";
    };
  };
  withMetrics = eval {
    settings = settings // {
      listen = "[::]:8080";
      metrics.listen = "0.0.0.0:9090";
    };
  };
  anyHost = eval { settings = settings // { listen = "[::]:8080"; }; };
  secretInStore = eval {
    clientSecretFiles.grafana = "/nix/store/22222222222222222222222222222222-grafana-secret";
  };
  secretAsPath = eval { clientSecretFiles.grafana = ./example-settings.nix; };
  secretRelative = eval { clientSecretFiles.grafana = "secrets/grafana"; };
  secretForUnknownClient = eval { clientSecretFiles.nextcloud = "/run/secrets/nextcloud"; };
  twoSecrets = eval {
    settings = settings // {
      clients = [ ((head settings.clients) // { client_secret_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA"; }) ];
    };
  };
  inlineSecret = eval {
    clientSecretFiles = { };
    settings = settings // {
      clients = [ ((head settings.clients) // { client_secret = "an-inline-secret-in-the-store"; }) ];
    };
  };
  absoluteSecretFile = eval {
    clientSecretFiles = { };
    settings = settings // {
      clients = [ ((head settings.clients) // { client_secret_file = "/run/secrets/grafana"; }) ];
    };
  };
  noSecretFiles = eval { clientSecretFiles = { }; };
  badListen = eval { settings = settings // { listen = "8080"; }; };
  movedStateDir = eval { settings = settings // { state_dir = "/srv/plex-oidc"; }; };

  checks = [
    {
      name = "ExecStart runs serve with the rendered config file";
      ok = sc.ExecStart == "${exe} serve --config ${configFile}";
    }
    {
      name = "systemctl reload sends SIGHUP to the service";
      ok = sc.ExecReload == "/run/current-system/sw/bin/kill -HUP $MAINPID";
    }
    {
      name = "each client secret file is loaded as a credential named after the client";
      ok = sc.LoadCredential == [ "client-grafana:/run/secrets/plex-oidc/grafana" ];
    }
    {
      name = "the rendered client reads its secret from the credential by relative name";
      ok = (grafana.client_secret_file or null) == "client-grafana" && svc.credentialNames == [ "client-grafana" ];
    }
    {
      name = "clients without a secret file are rendered unchanged";
      ok =
        immich == {
          client_id = "immich-mobile";
          public = true;
          redirect_uris = [ "app.immich:///oauth-callback" ];
        };
    }
    {
      name = "unset (null) settings are dropped, also inside lists";
      ok =
        !(hasNull svc.settings)
        && !(svc.settings.plex ? server_name)
        && svc.settings.metrics == { }
        && !(grafana ? public);
    }
    {
      name = "state_dir is the directory systemd creates";
      ok = svc.settings.state_dir == "/var/lib/plex-oidc";
    }
    {
      name = "other settings pass through untouched";
      ok =
        svc.settings.issuer == "https://auth.example.com"
        && svc.settings.log == { format = "json"; }
        && svc.settings.plex.server_id == settings.plex.server_id;
    }
    {
      name = "the full nixpkgs hardening set is present with the expected values";
      ok = hardeningMismatches == [ ];
      detail = concatStringsSep ", " hardeningMismatches;
    }
    {
      name = "exit status 2 (configuration error) is not restarted";
      ok = sc.Restart == "on-failure" && sc.RestartPreventExitStatus == "2";
    }
    {
      name = "the service waits for the network it dials out to";
      ok =
        elem "network-online.target" svc.service.after
        && elem "network-online.target" svc.service.wants
        && svc.service.wantedBy == [ "multi-user.target" ];
    }
    {
      name = "a port below 1024 adds only CAP_NET_BIND_SERVICE and turns PrivateUsers off";
      ok =
        privileged.service.serviceConfig.CapabilityBoundingSet == "CAP_NET_BIND_SERVICE"
        && privileged.service.serviceConfig.AmbientCapabilities == "CAP_NET_BIND_SERVICE"
        && privileged.service.serviceConfig.PrivateUsers == false
        && privileged.port == 443;
    }
    {
      name = "a privileged metrics port needs the capability too";
      ok = privilegedMetrics.service.serviceConfig.CapabilityBoundingSet == "CAP_NET_BIND_SERVICE";
    }
    {
      name = "every directive of the unit is known to systemd";
      ok = unknownDirectives svc.service == [ ] && unknownDirectives privileged.service == [ ];
      detail = concatStringsSep ", " (unknownDirectives svc.service);
    }
    {
      name = "the directive check catches a misspelt directive";
      ok =
        unknownDirectives {
          serviceConfig = sc // {
            WorkingDirecotry = "/var/lib/plex-oidc";
          };
        } == [ "Service.WorkingDirecotry" ];
    }
    {
      name = "a correct configuration passes every assertion without warnings";
      ok = failing svc == [ ] && svc.warnings == [ ] && failing noSecretFiles == [ ];
      detail = concatStringsSep "; " (failing svc);
    }
    {
      name = "no secret files means no LoadCredential line";
      ok = noSecretFiles.service.serviceConfig.LoadCredential == [ ] && !((head noSecretFiles.settings.clients) ? client_secret_file);
    }
    {
      name = "a secret file inside the Nix store is rejected";
      ok = failsWith secretInStore "points into the Nix store.*";
    }
    {
      name = "a Nix path literal as secret file is rejected";
      ok = failsWith secretAsPath "must be a string.*";
    }
    {
      name = "a relative secret file path is rejected";
      ok = failsWith secretRelative "must be an absolute path.*";
    }
    {
      name = "a secret file for a client that does not exist is rejected";
      ok = failsWith secretForUnknownClient "has no client with client_id \"nextcloud\".*";
    }
    {
      name = "a client with both a secret file and another secret is rejected";
      ok = failsWith twoSecrets "remove its client_secret_hash.*";
    }
    {
      name = "an inline client_secret warns that it lands in the Nix store";
      ok = length inlineSecret.warnings == 1 && match ".*world-readable Nix store.*" (head inlineSecret.warnings) != null;
    }
    {
      name = "an absolute client_secret_file in settings warns about the dynamic user";
      ok = length absoluteSecretFile.warnings == 1 && match ".*clientSecretFiles.*" (head absoluteSecretFile.warnings) != null;
    }
    {
      name = "a listen address without a port is rejected";
      ok = failsWith badListen "settings.listen must be.*";
    }
    {
      name = "a state_dir other than the systemd StateDirectory is rejected";
      ok = failsWith movedStateDir "settings.state_dir must stay /var/lib/plex-oidc.*";
    }
    {
      name = "loopback listen addresses are recognised";
      ok = svc.listenIsLoopback && !anyHost.listenIsLoopback && svc.port == 8080;
    }
    {
      name = "Prometheus scrapes the metrics listener, else the main one, on a reachable address";
      ok =
        withMetrics.scrapeTarget == "127.0.0.1:9090"
        && anyHost.scrapeTarget == "[::1]:8080"
        && svc.scrapeTarget == "127.0.0.1:8080";
    }
  ];

  failed = filter (c: !c.ok) checks;
  describe = c: if c ? detail && c.detail != "" then "${c.name} (${c.detail})" else c.name;
in
if failed != [ ] then
  throw "service-unit: ${toString (length failed)} of ${toString (length checks)} checks failed:\n  - ${concatStringsSep "\n  - " (map describe failed)}"
else
  {
    passed = length checks;
    checks = map (c: c.name) checks;
    inherit (svc) settings;
    service = svc.service;
  }

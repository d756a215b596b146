# The systemd side of `services.plex-oidc`, as a pure function of the module's options.
#
# It uses builtins only (no nixpkgs `lib`), so CI evaluates and asserts it with `nix-instantiate --eval`
# on machines that cannot fetch nixpkgs (nix/tests/service-unit.nix). module.nix calls it and copies the
# result into the NixOS configuration unchanged.
{
  # Absolute path of the plex-oidc binary.
  exe,
  # The rendered config.json. The module passes the build-time-checked store path; lazily, since that
  # file is itself rendered from `settings` below.
  configFile,
  # services.plex-oidc.settings as evaluated by the module system (nulls stand for "unset").
  settings,
  # client_id -> absolute path of a file holding that client's secret, outside the Nix store.
  clientSecretFiles ? { },
  # Name under /var/lib that systemd creates and owns for the dynamic user.
  stateDirectory ? "plex-oidc",
  # Absolute path of kill(1), for `systemctl reload` (SIGHUP: config and rotated keys, atomically).
  killExe ? "/run/current-system/sw/bin/kill",
}:
let
  inherit (builtins)
    all
    attrNames
    concatLists
    concatStringsSep
    elem
    filter
    head
    isAttrs
    isList
    isString
    listToAttrs
    map
    mapAttrs
    match
    substring
    stringLength
    ;

  # Nulls mean "let the binary use its default". Unlike lib.filterAttrsRecursive this also descends
  # into lists, because `clients` is a list of attribute sets.
  dropNulls =
    v:
    if isAttrs v then
      mapAttrs (_: dropNulls) (removeNulls v)
    else if isList v then
      map dropNulls v
    else
      v;
  removeNulls =
    attrs:
    listToAttrs (
      map (name: {
        inherit name;
        value = attrs.${name};
      }) (filter (name: attrs.${name} != null) (attrNames attrs))
    );

  statePath = "/var/lib/${stateDirectory}";
  credentialName = clientId: "client-${clientId}";

  clients = settings.clients or [ ];
  clientIds = map (c: c.client_id or "") clients;
  secretKeys = [
    "client_secret"
    "client_secret_file"
    "client_secret_hash"
    "public"
  ];
  givenSecretKeys = client: filter (k: (client.${k} or null) != null) secretKeys;

  # The binary resolves a relative client_secret_file against $CREDENTIALS_DIRECTORY, where systemd's
  # LoadCredential puts a copy readable only by the service; the real file can stay root-only.
  withCredential =
    client:
    if clientSecretFiles ? ${client.client_id or ""} then
      client // { client_secret_file = credentialName client.client_id; }
    else
      client;

  rendered = dropNulls (
    settings
    // {
      state_dir = statePath;
      clients = map withCredential clients;
    }
  );

  # "0.0.0.0:8080", "[::]:8080", "localhost:8080" -> { host; port; }
  parseListen =
    address:
    let
      m = match "(.*):([0-9]+)" address;
    in
    if m == null then
      null
    else
      {
        host = head m;
        port = builtins.fromJSON (builtins.elemAt m 1);
      };
  listen = parseListen (rendered.listen or "0.0.0.0:8080");
  metricsListenText = (rendered.metrics or { }).listen or null;
  metricsListen = if metricsListenText == null then null else parseListen metricsListenText;
  isLoopback =
    host:
    host == "localhost"
    || host == "[::1]"
    || match "127\\.[0-9]+\\.[0-9]+\\.[0-9]+" host != null;
  ports = map (l: l.port) (filter (l: l != null) [
    listen
    metricsListen
  ]);
  needsBindCapability = ports != [ ] && !(all (p: p >= 1024) ports);

  # Prometheus on this host scrapes the metrics listener if there is one, else the main one.
  scrapeListen = if metricsListen != null then metricsListen else listen;
  scrapeHost =
    if scrapeListen == null then
      "127.0.0.1"
    else if scrapeListen.host == "0.0.0.0" then
      "127.0.0.1"
    else if scrapeListen.host == "[::]" then
      "[::1]"
    else
      scrapeListen.host;

  inStore = p: substring 0 (stringLength builtins.storeDir + 1) (toString p) == builtins.storeDir + "/";

  secretFileAssertions = concatLists (
    map (
      clientId:
      let
        file = clientSecretFiles.${clientId};
        option = "services.plex-oidc.clientSecretFiles.${clientId}";
        client = builtins.head (filter (c: (c.client_id or "") == clientId) clients ++ [ { } ]);
      in
      [
        {
          # A path literal (./secret) would be copied into the world-readable store when interpolated.
          assertion = isString file;
          message = "${option} must be a string such as \"/run/secrets/${clientId}\", not a Nix path: a path would be copied into the world-readable Nix store.";
        }
        {
          assertion = isString file && substring 0 1 file == "/";
          message = "${option} must be an absolute path.";
        }
        {
          assertion = !(inStore file);
          message = "${option} points into the Nix store (${toString file}), which every local user can read; keep client secrets outside it (for example with sops-nix or agenix).";
        }
        {
          assertion = elem clientId clientIds;
          message = "${option} is set, but services.plex-oidc.settings.clients has no client with client_id \"${clientId}\".";
        }
        {
          assertion = givenSecretKeys client == [ ];
          message = "services.plex-oidc.settings.clients: client \"${clientId}\" gets its secret from ${option}; remove its ${concatStringsSep ", " (givenSecretKeys client)}.";
        }
      ]
    ) (attrNames clientSecretFiles)
  );

  assertions = secretFileAssertions ++ [
    {
      assertion = (settings.state_dir or statePath) == statePath;
      message = "services.plex-oidc.settings.state_dir must stay ${statePath}: systemd creates that directory (StateDirectory) for the service's dynamic user.";
    }
    {
      assertion = listen != null;
      message = "services.plex-oidc.settings.listen must be \"HOST:PORT\" (got \"${toString (rendered.listen or "")}\").";
    }
    {
      assertion = metricsListenText == null || metricsListen != null;
      message = "services.plex-oidc.settings.metrics.listen must be \"HOST:PORT\" (got \"${toString metricsListenText}\").";
    }
  ];

  warnings =
    map (
      c:
      "services.plex-oidc.settings.clients: the secret of client \"${c.client_id or "?"}\" is written into the world-readable Nix store; set services.plex-oidc.clientSecretFiles.\"${c.client_id or "?"}\" instead."
    ) (filter (c: (c.client_secret or null) != null) clients)
    ++
      map
        (
          c:
          "services.plex-oidc.settings.clients: client \"${c.client_id or "?"}\" reads ${c.client_secret_file}, which the service's dynamic user usually cannot read; set services.plex-oidc.clientSecretFiles.\"${c.client_id or "?"}\" instead."
        )
        (
          filter (
            c:
            !(clientSecretFiles ? ${c.client_id or ""})
            && isString (c.client_secret_file or null)
            && substring 0 1 c.client_secret_file == "/"
          ) clients
        );

  # A string, not a list: NixOS renders an empty list as no line at all, which would leave the
  # capability bounding set unrestricted; "" renders "CapabilityBoundingSet=", which empties it.
  bindCapability = if needsBindCapability then "CAP_NET_BIND_SERVICE" else "";
in
{
  settings = rendered;
  inherit assertions warnings;
  credentialNames = map credentialName (attrNames clientSecretFiles);
  port = if listen == null then null else listen.port;
  listenIsLoopback = listen != null && isLoopback listen.host;
  scrapeTarget = "${scrapeHost}:${toString (if scrapeListen == null then 8080 else scrapeListen.port)}";

  # Arguments for systemd.services.plex-oidc (the module adds restartTriggers).
  service = {
    description = "plex-oidc OpenID Connect provider (sign in with Plex)";
    wantedBy = [ "multi-user.target" ];
    # It dials plex.tv for every login.
    after = [ "network-online.target" ];
    wants = [ "network-online.target" ];

    serviceConfig = {
      Type = "exec";
      ExecStart = "${exe} serve --config ${configFile}";
      # SIGHUP re-reads the config and the signing keys (after `plex-oidc keys rotate`) atomically.
      ExecReload = "${killExe} -HUP $MAINPID";
      Restart = "on-failure";
      RestartSec = "5s";
      # Exit status 2 is a configuration error; restarting cannot fix it.
      RestartPreventExitStatus = "2";

      DynamicUser = true;
      StateDirectory = stateDirectory;
      StateDirectoryMode = "0700";
      LoadCredential = map (id: "${credentialName id}:${toString clientSecretFiles.${id}}") (
        attrNames clientSecretFiles
      );

      # Relaxation: binding a port below 1024 needs this one capability, and it only works in the
      # host's user namespace, so PrivateUsers must be off in that case.
      CapabilityBoundingSet = bindCapability;
      AmbientCapabilities = bindCapability;
      PrivateUsers = !needsBindCapability;

      NoNewPrivileges = true;
      PrivateTmp = true;
      PrivateDevices = true;
      DevicePolicy = "closed";
      DeviceAllow = "";
      PrivateMounts = true;
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
      RemoveIPC = true;
      # AF_UNIX: glibc's resolver may talk to nscd/systemd-resolved over a local socket.
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
      SystemCallErrorNumber = "EPERM";
      UMask = "0077";
    };
  };
}

# Renders the unit produced by nix/service.nix as a .service file, the way NixOS does
# (nixos/lib/systemd-lib.nix: booleans as true/false, one line per list element, an empty list as no line),
# so that `systemd-analyze verify` and `systemd-analyze security --offline` can read it.
#
#   nix eval --impure --raw --expr 'import ./nix/tests/unit-file.nix { exe = "/path/to/plex-oidc"; configFile = "/path/to/config.json"; }'
{
  exe,
  configFile,
  # kill(1) for ExecReload; systemd-analyze verify needs it to exist on the machine that runs it.
  killExe ? "/bin/kill",
  settings ? import ./example-settings.nix,
  clientSecretFiles ? {
    grafana = "/run/secrets/plex-oidc/grafana";
  },
}:
let
  inherit (builtins)
    attrNames
    concatLists
    concatStringsSep
    isList
    map
    ;

  svc = import ../service.nix {
    inherit
      exe
      killExe
      configFile
      settings
      clientSecretFiles
      ;
  };
  unit = svc.service;

  toOption =
    x:
    if x == true then
      "true"
    else if x == false then
      "false"
    else
      toString x;
  section =
    title: attrs:
    "[${title}]\n"
    + concatStringsSep "" (
      concatLists (
        map (name: map (x: "${name}=${toOption x}\n") (
          if isList attrs.${name} then attrs.${name} else [ attrs.${name} ]
        )) (attrNames attrs)
      )
    );
in
section "Unit" {
  Description = unit.description;
  After = concatStringsSep " " unit.after;
  Wants = concatStringsSep " " unit.wants;
}
+ "\n"
+ section "Service" unit.serviceConfig
+ "\n"
+ section "Install" { WantedBy = concatStringsSep " " unit.wantedBy; }

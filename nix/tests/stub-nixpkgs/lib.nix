# The subset of nixpkgs' lib that flake.nix and nix/*.nix use, with the same names and semantics.
let
  inherit (builtins)
    attrNames
    concatMap
    filter
    listToAttrs
    map
    pathExists
    ;

  filesetOf = x: if x ? _stubFileset then x._stubFileset else [ x ];
  mkFileset = paths: { _stubFileset = paths; };

  requireExisting =
    p:
    if pathExists p then
      p
    else
      throw "lib.fileset: ${toString p} does not exist (wrap it in lib.fileset.maybeMissing if that is expected)";
in
rec {
  genAttrs =
    names: f:
    listToAttrs (
      map (name: {
        inherit name;
        value = f name;
      }) names
    );
  optionalAttrs = cond: attrs: if cond then attrs else { };
  optional = cond: x: if cond then [ x ] else [ ];
  importTOML = path: builtins.fromTOML (builtins.readFile path);
  getExe =
    drv:
    if drv ? meta.mainProgram then
      "${drv}/bin/${drv.meta.mainProgram}"
    else
      throw "lib.getExe: ${drv.name or "derivation"} has no meta.mainProgram";

  licenses = {
    mit = {
      spdxId = "MIT";
    };
    asl20 = {
      spdxId = "Apache-2.0";
    };
  };
  platforms = {
    linux = [
      "x86_64-linux"
      "aarch64-linux"
    ];
    darwin = [
      "x86_64-darwin"
      "aarch64-darwin"
    ];
  };

  # Filesets are lists of existing paths here; toSource checks they lie under root.
  fileset = {
    unions = list: mkFileset (concatMap (x: filesetOf (if x ? _stubFileset then x else requireExisting x)) list);
    maybeMissing = p: mkFileset (if pathExists p then [ p ] else [ ]);
    difference =
      a: b:
      let
        removed = map toString (filesetOf b);
      in
      mkFileset (filter (p: !(builtins.elem (toString p) removed)) (filesetOf a));
    toSource =
      { root, fileset }:
      let
        paths = filesetOf fileset;
        rootText = toString root;
        outside = filter (
          p: builtins.substring 0 (builtins.stringLength rootText + 1) (toString p) != rootText + "/"
        ) paths;
      in
      if outside != [ ] then
        throw "lib.fileset.toSource: ${toString (map toString outside)} not under root ${rootText}"
      else
        {
          _stubSource = true;
          inherit root;
          files = map toString (map requireExisting paths);
        };
  };
}

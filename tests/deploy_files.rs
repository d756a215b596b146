//! The deployment files under examples/deploy/ (fly.toml, the Kubernetes manifests, the shared config.json) parse,
//! agree with each other, and name the port, probe paths and environment variable the code uses.
//!
//! There is no TOML or YAML crate in the dependency tree, so this module carries two small parsers for
//! the subsets those files are written in. Anything outside the subset is an error, never skipped, so a
//! file the parsers cannot read fails the test instead of passing unread.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

const HTTP_PORT: u64 = 8080;
const LIVENESS_PATH: &str = "/healthz";
const READINESS_PATH: &str = "/readyz";
const CONFIG_ENV: &str = "PLEX_OIDC_CONFIG";
const STATE_DIR: &str = "/var/lib/plex-oidc";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn deploy_config() -> Value {
    serde_json::from_str(&read("examples/deploy/config.json"))
        .expect("examples/deploy/config.json is JSON")
}

fn fly() -> Value {
    toml::parse(&read("examples/deploy/fly.toml"))
        .unwrap_or_else(|e| panic!("examples/deploy/fly.toml: {e}"))
}

/// Every document of every manifest listed in examples/deploy/kubernetes/kustomization.yaml, by kind.
fn kubernetes() -> BTreeMap<String, Value> {
    let kustomization = single_document("examples/deploy/kubernetes/kustomization.yaml");
    let mut by_kind = BTreeMap::new();
    for resource in strings(&kustomization["resources"]) {
        let relative = format!("examples/deploy/kubernetes/{resource}");
        for document in yaml::parse(&read(&relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
        {
            let kind = document["kind"]
                .as_str()
                .unwrap_or_else(|| panic!("{relative}: a document has no kind"))
                .to_owned();
            assert!(
                by_kind.insert(kind.clone(), document).is_none(),
                "two {kind} manifests"
            );
        }
    }
    by_kind
}

fn single_document(relative: &str) -> Value {
    let mut documents = yaml::parse(&read(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"));
    assert_eq!(documents.len(), 1, "{relative} holds one document");
    documents.remove(0)
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("expected a list, got {value}"))
        .iter()
        .map(|v| {
            v.as_str()
                .unwrap_or_else(|| panic!("expected a string, got {v}"))
        })
        .collect()
}

fn text(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("expected a scalar, got {value}"))
}

/// The port of a "HOST:PORT" socket address from config.json.
fn port_of(address: &str) -> u64 {
    address
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| panic!("{address:?} is not HOST:PORT"))
}

fn client_secret_files(config: &Value) -> BTreeSet<String> {
    config["clients"]
        .as_array()
        .expect("clients is a list")
        .iter()
        .filter_map(|client| client["client_secret_file"].as_str())
        .map(str::to_owned)
        .collect()
}

fn plex_oidc_container(k8s: &BTreeMap<String, Value>) -> &Value {
    let containers = k8s["Deployment"]["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("the Deployment has containers");
    containers
        .iter()
        .find(|c| c["name"] == "plex-oidc")
        .expect("a container named plex-oidc")
}

/// containerPort of the container's port with this name.
fn named_port(container: &Value, name: &str) -> u64 {
    let port = container["ports"]
        .as_array()
        .expect("the container lists ports")
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no container port named {name:?}"));
    text(&port["containerPort"])
        .parse()
        .expect("containerPort is a number")
}

/// The port a probe or Service points at, resolving port names through the container.
fn resolve_port(container: &Value, port: &Value) -> u64 {
    let port = text(port);
    port.parse().unwrap_or_else(|_| named_port(container, port))
}

fn volume_mount<'a>(k8s: &'a BTreeMap<String, Value>, mount_path: &str) -> (&'a Value, &'a Value) {
    let container = plex_oidc_container(k8s);
    let mount = container["volumeMounts"]
        .as_array()
        .expect("the container has volumeMounts")
        .iter()
        .find(|m| m["mountPath"] == mount_path)
        .unwrap_or_else(|| panic!("nothing is mounted at {mount_path}"));
    let volume = k8s["Deployment"]["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .expect("the pod has volumes")
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap_or_else(|| panic!("no volume named {}", mount["name"]));
    (mount, volume)
}

fn env_value<'a>(container: &'a Value, name: &str) -> &'a str {
    let entry = container["env"]
        .as_array()
        .expect("the container sets env")
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("the container does not set {name}"));
    text(&entry["value"])
}

/// Each Rust source file under src/, with its path.
fn sources() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).expect("src/ is readable") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("source is UTF-8");
                out.push((path, text));
            }
        }
    }
    let mut out = Vec::new();
    walk(&root().join("src"), &mut out);
    out
}

fn source_has_string_literal(candidates: &[&str]) -> bool {
    let quoted: Vec<String> = candidates.iter().map(|c| format!("\"{c}\"")).collect();
    sources()
        .iter()
        .any(|(_, text)| quoted.iter().any(|q| text.contains(q.as_str())))
}

/// A directory under the system temp dir, unique per test and removed afterwards.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "plex-oidc-deploy-{name}-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `plex-oidc check` on `config` with every client_secret_file replaced by a readable temp file.
fn check_with_stand_in_secrets(name: &str, config: &Value) -> (bool, String) {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = TempDir::new(name);
    let mut config = config.clone();
    for (i, client) in config["clients"]
        .as_array_mut()
        .expect("clients")
        .iter_mut()
        .enumerate()
    {
        if client.get("client_secret_file").is_some() {
            let secret = dir.0.join(format!("client-{i}"));
            std::fs::write(&secret, "a-stand-in-secret-for-the-deploy-test").expect("write secret");
            std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600))
                .expect("chmod");
            client["client_secret_file"] = Value::String(secret.display().to_string());
        }
    }
    let path = dir.0.join("config.json");
    std::fs::write(&path, config.to_string()).expect("write config");
    let output = Command::new(env!("CARGO_BIN_EXE_plex-oidc"))
        .arg("check")
        .arg("--config")
        .arg(&path)
        .env_remove(CONFIG_ENV)
        .env_remove("CREDENTIALS_DIRECTORY")
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success() && all.contains("config OK"), all)
}

#[test]
fn the_code_still_uses_the_port_probe_paths_and_env_name_the_deploy_files_rely_on() {
    // A rename in the code must fail here, not in a cluster.
    assert!(
        source_has_string_literal(&["0.0.0.0:8080"]),
        "src/ no longer defaults to listening on 0.0.0.0:{HTTP_PORT}"
    );
    assert!(
        source_has_string_literal(&["/healthz", "healthz"]),
        "src/ no longer routes {LIVENESS_PATH}"
    );
    assert!(
        source_has_string_literal(&["/readyz", "readyz"]),
        "src/ no longer routes {READINESS_PATH}"
    );
    assert!(
        source_has_string_literal(&["/metrics", "metrics"]),
        "src/ no longer routes /metrics"
    );
    assert!(
        source_has_string_literal(&[CONFIG_ENV]),
        "src/ no longer reads {CONFIG_ENV}"
    );
    assert!(
        source_has_string_literal(&[STATE_DIR]),
        "src/ no longer defaults state_dir to {STATE_DIR}"
    );
}

#[test]
fn the_shared_deploy_config_passes_plex_oidc_check() {
    let config = deploy_config();
    assert_eq!(port_of(text(&config["listen"])), HTTP_PORT);
    assert_eq!(config["state_dir"], STATE_DIR);
    let (ok, output) = check_with_stand_in_secrets("config", &config);
    assert!(
        ok,
        "plex-oidc check rejected examples/deploy/config.json:\n{output}"
    );
}

#[test]
fn fly_serves_the_http_port_and_routes_traffic_by_the_readiness_probe() {
    let fly = fly();
    let service = &fly["http_service"];
    assert_eq!(service["internal_port"], HTTP_PORT);
    assert_eq!(service["force_https"], true);
    let checks = service["checks"]
        .as_array()
        .expect("http_service has checks");
    assert!(
        checks
            .iter()
            .any(|c| c["path"] == READINESS_PATH && c["method"] == "GET"),
        "no GET {READINESS_PATH} check in {checks:?}"
    );
}

#[test]
fn fly_scales_to_zero_on_a_256_mb_machine() {
    let fly = fly();
    assert_eq!(fly["http_service"]["auto_stop_machines"], "stop");
    assert_eq!(fly["http_service"]["auto_start_machines"], true);
    assert_eq!(fly["http_service"]["min_machines_running"], 0);
    let vm = &fly["vm"].as_array().expect("a [[vm]] section")[0];
    assert_eq!(vm["memory"], "256mb");
}

#[test]
fn fly_points_the_config_env_at_the_shipped_config_json() {
    let fly = fly();
    let config_path = text(&fly["env"][CONFIG_ENV]);
    let files = fly["files"].as_array().expect("[[files]] entries");
    let shipped = files
        .iter()
        .find(|f| f["guest_path"] == config_path)
        .unwrap_or_else(|| panic!("no [[files]] entry writes {config_path}"));
    let local: Value = serde_json::from_str(&read(&format!(
        "examples/deploy/{}",
        text(&shipped["local_path"])
    )))
    .expect("the shipped config is JSON");
    assert_eq!(local, deploy_config(), "fly ships a different config.json");
}

#[test]
fn fly_delivers_every_client_secret_file_the_config_reads() {
    let fly = fly();
    let from_secrets: BTreeSet<String> = fly["files"]
        .as_array()
        .expect("[[files]] entries")
        .iter()
        .filter(|f| f.get("secret_name").is_some())
        .map(|f| text(&f["guest_path"]).to_owned())
        .collect();
    assert_eq!(from_secrets, client_secret_files(&deploy_config()));
}

#[test]
fn fly_keeps_state_on_a_volume_and_scrapes_the_metrics_listener() {
    let fly = fly();
    assert_eq!(fly["mounts"]["destination"], STATE_DIR);
    let config = deploy_config();
    assert_eq!(
        fly["metrics"]["port"],
        port_of(text(&config["metrics"]["listen"]))
    );
    assert_eq!(fly["metrics"]["path"], "/metrics");
}

#[test]
fn kustomization_lists_every_manifest_in_the_directory() {
    let listed: BTreeSet<String> =
        strings(&single_document("examples/deploy/kubernetes/kustomization.yaml")["resources"])
            .into_iter()
            .map(str::to_owned)
            .collect();
    let present: BTreeSet<String> = std::fs::read_dir(root().join("examples/deploy/kubernetes"))
        .expect("examples/deploy/kubernetes exists")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml") && name != "kustomization.yaml")
        .collect();
    assert_eq!(listed, present);
    let kinds: Vec<String> = kubernetes().into_keys().collect();
    assert_eq!(
        kinds,
        [
            "ConfigMap",
            "Deployment",
            "PersistentVolumeClaim",
            "Secret",
            "Service"
        ]
    );
}

#[test]
fn kubernetes_probes_healthz_and_readyz_on_the_http_port() {
    let k8s = kubernetes();
    let container = plex_oidc_container(&k8s);
    assert_eq!(named_port(container, "http"), HTTP_PORT);
    for (probe, path) in [
        ("livenessProbe", LIVENESS_PATH),
        ("readinessProbe", READINESS_PATH),
        ("startupProbe", LIVENESS_PATH),
    ] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(resolve_port(container, &get["port"]), HTTP_PORT, "{probe}");
    }
    let config: Value = serde_json::from_str(text(&k8s["ConfigMap"]["data"]["config.json"]))
        .expect("config.json is JSON");
    assert_eq!(port_of(text(&config["listen"])), HTTP_PORT);
    assert_eq!(
        named_port(container, "metrics"),
        port_of(text(&config["metrics"]["listen"]))
    );
}

#[test]
fn kubernetes_service_targets_the_http_port() {
    let k8s = kubernetes();
    let container = plex_oidc_container(&k8s);
    let service = &k8s["Service"];
    let selector = &service["spec"]["selector"];
    let labels = &k8s["Deployment"]["spec"]["template"]["metadata"]["labels"];
    for (key, value) in selector.as_object().expect("a selector") {
        assert_eq!(&labels[key], value, "the Service selects pods by {key}");
    }
    let ports = service["spec"]["ports"].as_array().expect("Service ports");
    assert!(
        ports
            .iter()
            .all(|p| resolve_port(container, &p["targetPort"]) == HTTP_PORT),
        "{ports:?}"
    );
}

#[test]
fn kubernetes_reads_the_configmap_through_plex_oidc_config() {
    let k8s = kubernetes();
    let container = plex_oidc_container(&k8s);
    let config_path = Path::new(env_value(container, CONFIG_ENV));
    let dir = config_path
        .parent()
        .expect("a directory")
        .to_str()
        .expect("UTF-8");
    let (mount, volume) = volume_mount(&k8s, dir);
    assert_eq!(mount["readOnly"], "true");
    assert_eq!(
        volume["configMap"]["name"],
        k8s["ConfigMap"]["metadata"]["name"]
    );
    let key = config_path
        .file_name()
        .expect("a file name")
        .to_str()
        .expect("UTF-8");
    let config: Value = serde_json::from_str(text(&k8s["ConfigMap"]["data"][key]))
        .expect("the ConfigMap's config is JSON");
    assert_eq!(
        config,
        deploy_config(),
        "the ConfigMap and examples/deploy/config.json differ"
    );
    assert_eq!(strings(&container["args"]), ["serve"]);
}

#[test]
fn kubernetes_mounts_every_client_secret_file_from_the_secret() {
    let k8s = kubernetes();
    let secret = &k8s["Secret"];
    let keys: BTreeSet<&str> = secret["stringData"]
        .as_object()
        .expect("stringData")
        .keys()
        .map(String::as_str)
        .collect();
    let files = client_secret_files(&deploy_config());
    assert!(!files.is_empty());
    for file in &files {
        let path = Path::new(file);
        let (mount, volume) = volume_mount(
            &k8s,
            path.parent().and_then(Path::to_str).expect("a directory"),
        );
        assert_eq!(mount["readOnly"], "true");
        assert_eq!(volume["secret"]["secretName"], secret["metadata"]["name"]);
        // Group-readable for fsGroup, not world-readable (plex-oidc warns about the latter).
        assert_eq!(volume["secret"]["defaultMode"], "288", "0440");
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a file name");
        assert!(
            keys.contains(name),
            "the Secret has no key {name:?} for {file}"
        );
    }
}

#[test]
fn kubernetes_runs_non_root_with_a_read_only_root_and_state_on_a_volume() {
    let k8s = kubernetes();
    let pod = &k8s["Deployment"]["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], "true");
    assert_eq!(pod["securityContext"]["runAsUser"], "65534");
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(pod["automountServiceAccountToken"], "false");
    let container = plex_oidc_container(&k8s);
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], "true");
    assert_eq!(security["allowPrivilegeEscalation"], "false");
    assert_eq!(strings(&security["capabilities"]["drop"]), ["ALL"]);
    let (_, volume) = volume_mount(&k8s, STATE_DIR);
    assert_eq!(
        volume["persistentVolumeClaim"]["claimName"],
        k8s["PersistentVolumeClaim"]["metadata"]["name"]
    );
    // A second replica would share neither pending logins nor the ReadWriteOnce volume.
    assert_eq!(k8s["Deployment"]["spec"]["replicas"], "1");
    assert_eq!(k8s["Deployment"]["spec"]["strategy"]["type"], "Recreate");
}

#[test]
fn the_oci_image_exposes_the_http_port_and_defaults_the_config_env() {
    // nix/ is outside the package source the Nix build tests (so editing it does not rebuild); in a
    // checkout, where CI runs, it is there.
    let Ok(image) = std::fs::read_to_string(root().join("nix/oci-image.nix")) else {
        return;
    };
    assert!(
        image.contains(&format!("port = {HTTP_PORT};")),
        "nix/oci-image.nix exposes another port"
    );
    assert!(
        image.contains("\"${toString port}/tcp\""),
        "nix/oci-image.nix does not expose `port`"
    );
    let config_path = env_value(plex_oidc_container(&kubernetes()), CONFIG_ENV).to_owned();
    assert!(
        image.contains(&format!("\"{CONFIG_ENV}={config_path}\"")),
        "the image's {CONFIG_ENV} differs from the manifests'"
    );
    assert!(image.contains("User = \"65534:65534\";"));
    assert!(image.contains(&format!("stateDir = \"{STATE_DIR}\";")));
}

#[test]
fn the_yaml_subset_parser_reads_what_the_manifests_use_and_rejects_the_rest() {
    let docs = yaml::parse(
        "# comment\na: 1\nb:\n  - name: x\n    port: 8080 # trailing\n  - plain\nc: |\n  {\n    \"k\": 1\n  }\nd: \"q: #\"\ne: []\n---\nf: 'it''s'\n",
    )
    .expect("parses");
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0]["a"], "1");
    assert_eq!(docs[0]["b"][0]["port"], "8080");
    assert_eq!(docs[0]["b"][1], "plain");
    assert_eq!(docs[0]["c"], "{\n  \"k\": 1\n}\n");
    assert_eq!(docs[0]["d"], "q: #");
    assert_eq!(docs[0]["e"], Value::Array(vec![]));
    assert_eq!(docs[1]["f"], "it's");
    for bad in [
        "a: [1, 2]\n",
        "a:\n\tb: 1\n",
        "a: 1\na: 2\n",
        "a: 1\n   b: 2\n",
        "- a\nb: 1\n",
        "just text\n",
    ] {
        assert!(yaml::parse(bad).is_err(), "accepted {bad:?}");
    }
}

#[test]
fn the_toml_subset_parser_reads_what_fly_toml_uses_and_rejects_the_rest() {
    let doc = toml::parse(
        "# c\na = \"x # y\"\nn = 10\n[t]\n  b = true\n  [t.u]\n    l = [\"p\", 'q']\n[[arr]]\n  k = 1\n[[arr]]\n  k = 2\n[[t.checks]]\n  path = \"/r\"\n",
    )
    .expect("parses");
    assert_eq!(doc["a"], "x # y");
    assert_eq!(doc["n"], 10);
    assert_eq!(doc["t"]["b"], true);
    assert_eq!(doc["t"]["u"]["l"], serde_json::json!(["p", "q"]));
    assert_eq!(doc["arr"][1]["k"], 2);
    assert_eq!(doc["t"]["checks"][0]["path"], "/r");
    for bad in [
        "a = { b = 1 }\n",
        "a = 1\na = 2\n",
        "a\n",
        "[t\n",
        "a = 1.5.6\n",
    ] {
        assert!(toml::parse(bad).is_err(), "accepted {bad:?}");
    }
}

/// The TOML used by fly.toml: comments, `key = value` with strings, integers, booleans and one-line
/// arrays of those, `[table]` and `[[array.of.tables]]` headers with dotted names.
mod toml {
    use serde_json::{Map, Value};

    pub fn parse(input: &str) -> Result<Value, String> {
        let mut root = Value::Object(Map::new());
        let mut current: Vec<String> = Vec::new();
        for (index, raw) in input.lines().enumerate() {
            let line = strip_comment(raw).trim();
            let at = |message: String| format!("line {}: {message}", index + 1);
            if line.is_empty() {
                continue;
            }
            if let Some(name) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
                current = dotted(name).map_err(at)?;
                let (last, parents) = current.split_last().expect("dotted() returns a name");
                let table = table_at(&mut root, parents).map_err(at)?;
                let array = table
                    .entry(last.clone())
                    .or_insert_with(|| Value::Array(Vec::new()));
                array
                    .as_array_mut()
                    .ok_or_else(|| at(format!("{last} is not an array of tables")))?
                    .push(Value::Object(Map::new()));
            } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                current = dotted(name).map_err(at)?;
                table_at(&mut root, &current).map_err(at)?;
            } else {
                let (key, value) = line
                    .split_once('=')
                    .ok_or_else(|| at(format!("expected `key = value`, got {line:?}")))?;
                let key = key.trim();
                if key.is_empty()
                    || !key
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    return Err(at(format!("unsupported key {key:?}")));
                }
                let value = parse_value(value.trim()).map_err(at)?;
                let table = table_at(&mut root, &current).map_err(at)?;
                if table.insert(key.to_owned(), value).is_some() {
                    return Err(at(format!("duplicate key {key}")));
                }
            }
        }
        Ok(root)
    }

    fn dotted(name: &str) -> Result<Vec<String>, String> {
        let parts: Vec<String> = name.split('.').map(|p| p.trim().to_owned()).collect();
        if parts.iter().any(|p| {
            p.is_empty()
                || !p
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        }) {
            return Err(format!("unsupported table name {name:?}"));
        }
        Ok(parts)
    }

    /// The table at `path`, created if missing; an array of tables on the way means its last element.
    fn table_at<'a>(
        root: &'a mut Value,
        path: &[String],
    ) -> Result<&'a mut Map<String, Value>, String> {
        let mut node = root;
        for part in path {
            let table = node
                .as_object_mut()
                .ok_or_else(|| format!("{part} is inside a non-table"))?;
            node = table
                .entry(part.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Array(items) = node {
                node = items
                    .last_mut()
                    .ok_or_else(|| format!("{part} is an empty array"))?;
            }
        }
        node.as_object_mut().ok_or_else(|| "not a table".to_owned())
    }

    fn strip_comment(line: &str) -> &str {
        let mut quote = None;
        for (i, c) in line.char_indices() {
            match (quote, c) {
                (None, '#') => return &line[..i],
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), _) if c == q => quote = None,
                _ => {}
            }
        }
        line
    }

    fn parse_value(text: &str) -> Result<Value, String> {
        if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            let items = inner.split(',').map(str::trim).filter(|s| !s.is_empty());
            return items
                .map(parse_value)
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array);
        }
        if text.starts_with('"') {
            return serde_json::from_str::<String>(text)
                .map(Value::String)
                .map_err(|e| format!("bad string {text}: {e}"));
        }
        if let Some(inner) = text.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')) {
            return Ok(Value::String(inner.to_owned()));
        }
        match text {
            "true" => return Ok(Value::Bool(true)),
            "false" => return Ok(Value::Bool(false)),
            _ => {}
        }
        text.parse::<i64>()
            .map(Value::from)
            .map_err(|_| format!("unsupported value {text:?}"))
    }
}

/// The YAML used by the manifests: block mappings and sequences (including `- key: value` items),
/// plain, single- and double-quoted scalars, `|` and `|-` literal blocks, `[]`/`{}`, comments and
/// `---` between documents. Every scalar stays a string. Flow collections, tabs, anchors and
/// duplicate keys are errors.
mod yaml {
    use serde_json::{Map, Value};

    pub fn parse(input: &str) -> Result<Vec<Value>, String> {
        let mut documents = Vec::new();
        let mut current: Vec<String> = Vec::new();
        let mut first_line = 1;
        for (index, line) in input.lines().chain(std::iter::once("---")).enumerate() {
            if line.trim_end() == "---" {
                if current.iter().any(|l| !is_blank(l)) {
                    let mut parser = Parser {
                        lines: std::mem::take(&mut current),
                        pos: 0,
                        first_line,
                    };
                    documents.push(parser.document()?);
                }
                current.clear();
                first_line = index + 2;
            } else {
                current.push(line.to_owned());
            }
        }
        Ok(documents)
    }

    fn is_blank(line: &str) -> bool {
        let t = line.trim_start();
        t.is_empty() || t.starts_with('#')
    }

    fn indent(line: &str) -> usize {
        line.len() - line.trim_start_matches(' ').len()
    }

    struct Parser {
        lines: Vec<String>,
        pos: usize,
        first_line: usize,
    }

    impl Parser {
        fn error(&self, message: impl std::fmt::Display) -> String {
            format!("line {}: {message}", self.first_line + self.pos)
        }

        fn skip_blank(&mut self) {
            while self.pos < self.lines.len() && is_blank(&self.lines[self.pos]) {
                self.pos += 1;
            }
        }

        fn peek(&mut self) -> Option<(usize, String)> {
            self.skip_blank();
            let line = self.lines.get(self.pos)?;
            Some((indent(line), line.trim().to_owned()))
        }

        fn document(&mut self) -> Result<Value, String> {
            if self.lines.iter().any(|l| l.contains('\t')) {
                return Err("tabs are not allowed in YAML indentation".into());
            }
            let (ind, _) = self.peek().ok_or_else(|| self.error("empty document"))?;
            let value = self.node(ind)?;
            match self.peek() {
                None => Ok(value),
                Some(_) => {
                    Err(self
                        .error("content after the end of the top-level node (bad indentation?)"))
                }
            }
        }

        fn node(&mut self, ind: usize) -> Result<Value, String> {
            match self.peek() {
                Some((_, text)) if text == "-" || text.starts_with("- ") => self.sequence(ind),
                Some(_) => self.mapping(ind),
                None => Err(self.error("expected a value")),
            }
        }

        fn sequence(&mut self, ind: usize) -> Result<Value, String> {
            let mut items = Vec::new();
            while let Some((i, text)) = self.peek() {
                if i < ind {
                    break;
                }
                if i > ind {
                    return Err(self.error("unexpected indentation in a sequence"));
                }
                let Some(rest) = text
                    .strip_prefix('-')
                    .filter(|r| r.is_empty() || r.starts_with(' '))
                else {
                    return Err(self.error("a mapping key where a sequence item was expected"));
                };
                let rest = rest.trim_start();
                if rest.is_empty() {
                    self.pos += 1;
                    let (child, _) = self.peek().ok_or_else(|| self.error("missing item"))?;
                    if child <= ind {
                        return Err(self.error("empty sequence item"));
                    }
                    items.push(self.node(child)?);
                } else if key_value(rest).is_some() {
                    // "- key: value" opens a mapping whose keys line up with "key".
                    let column = ind + (text.len() - rest.len());
                    self.lines[self.pos] = format!("{}{rest}", " ".repeat(column));
                    items.push(self.mapping(column)?);
                } else {
                    self.pos += 1;
                    items.push(self.scalar(rest)?);
                }
            }
            Ok(Value::Array(items))
        }

        fn mapping(&mut self, ind: usize) -> Result<Value, String> {
            let mut map = Map::new();
            while let Some((i, text)) = self.peek() {
                if i < ind {
                    break;
                }
                if i > ind {
                    return Err(self.error("unexpected indentation in a mapping"));
                }
                if text.starts_with("- ") || text == "-" {
                    return Err(self.error("a sequence item where a mapping key was expected"));
                }
                let (key, rest) = key_value(&text)
                    .ok_or_else(|| self.error(format!("expected `key: value`, got {text:?}")))?;
                let key = self.key(key)?;
                self.pos += 1;
                let value = match strip_comment(rest).trim() {
                    "" => match self.peek() {
                        Some((child, _)) if child > ind => self.node(child)?,
                        // A sequence may sit at its key's indentation.
                        Some((child, t)) if child == ind && (t.starts_with("- ") || t == "-") => {
                            self.sequence(ind)?
                        }
                        _ => Value::Null,
                    },
                    "|" => self.literal(ind, true)?,
                    "|-" => self.literal(ind, false)?,
                    scalar => self.scalar(scalar)?,
                };
                if map.insert(key.clone(), value).is_some() {
                    return Err(self.error(format!("duplicate key {key:?}")));
                }
            }
            Ok(Value::Object(map))
        }

        fn key(&self, key: &str) -> Result<String, String> {
            match self.scalar(key)? {
                Value::String(s) => Ok(s),
                other => Err(self.error(format!("unsupported key {other}"))),
            }
        }

        /// A `|` block: the following lines indented deeper than the key, blank lines included.
        fn literal(&mut self, key_indent: usize, keep_newline: bool) -> Result<Value, String> {
            let start = self.pos;
            let mut end = start;
            while end < self.lines.len()
                && (self.lines[end].trim().is_empty() || indent(&self.lines[end]) > key_indent)
            {
                end += 1;
            }
            while end > start && self.lines[end - 1].trim().is_empty() {
                end -= 1;
            }
            let block = &self.lines[start..end];
            let Some(first) = block.iter().find(|l| !l.trim().is_empty()) else {
                return Err(self.error("empty literal block"));
            };
            let block_indent = indent(first);
            let mut text = String::new();
            for line in block {
                if !line.trim().is_empty() && indent(line) < block_indent {
                    return Err(self.error("literal block line indented less than its first line"));
                }
                text.push_str(line.get(block_indent..).unwrap_or(""));
                text.push('\n');
            }
            if !keep_newline {
                text.pop();
            }
            self.pos = end;
            Ok(Value::String(text))
        }

        fn scalar(&self, text: &str) -> Result<Value, String> {
            let text = strip_comment(text).trim();
            match text {
                "[]" => return Ok(Value::Array(Vec::new())),
                "{}" => return Ok(Value::Object(Map::new())),
                _ => {}
            }
            if text.starts_with('"') {
                return serde_json::from_str::<String>(text)
                    .map(Value::String)
                    .map_err(|e| self.error(format!("bad string {text}: {e}")));
            }
            if let Some(inner) = text.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')) {
                return Ok(Value::String(inner.replace("''", "'")));
            }
            if text.starts_with(['[', '{', '&', '*', '!', '>', '|', '@', '`', '%']) {
                return Err(self.error(format!("unsupported YAML syntax {text:?}")));
            }
            Ok(Value::String(text.to_owned()))
        }
    }

    /// Splits "key: value" / "key:" (keys may be quoted); None if the line is not a mapping entry.
    fn key_value(text: &str) -> Option<(&str, &str)> {
        let end_of_key =
            if let Some(quote) = text.chars().next().filter(|c| *c == '"' || *c == '\'') {
                text[1..].find(quote)? + 2
            } else {
                0
            };
        let colon = text[end_of_key..].find(':')? + end_of_key;
        let rest = &text[colon + 1..];
        if !(rest.is_empty() || rest.starts_with(' ')) {
            return None;
        }
        let key = &text[..colon];
        if key.is_empty() || key.contains(" #") {
            return None;
        }
        Some((key, rest))
    }

    fn strip_comment(text: &str) -> &str {
        let mut quote = None;
        let mut previous = ' ';
        for (i, c) in text.char_indices() {
            match (quote, c) {
                (None, '#') if previous == ' ' => return &text[..i],
                (None, '"' | '\'') if previous == ' ' || i == 0 => quote = Some(c),
                (Some(q), _) if c == q => quote = None,
                _ => {}
            }
            previous = c;
        }
        text
    }
}

"""Checks that every place that names a pinned version agrees with stack/versions.env, the one
place versions are set (the test command runs this):
  - the defaults of docker-compose.yml (${NAME:-version}) and docker/*.Dockerfile (ARG NAME=version);
  - stack/go.mod's lakeFS and versitygw modules;
  - every version quoted in the work tree's text (README.md, docs/, scripts/, tests/, crates/,
    bins/, python/, configs/): `mlflow==X`, `MLflow X.Y.Z`, `lakeFS X.Y.Z`, `libtorch X.Y.Z`,
    image tags, the Rust constants that write a model's MLmodel and requirements, and so on.
    BENCHMARKS.md is left out: it records what each measurement ran with, on its date.
Prints one line saying how many it checked; exits 1 naming each file, line, pin and both values
that differ."""
import pathlib
import re
import sys

root = pathlib.Path(__file__).resolve().parent.parent
pins = {}
for line in (root / "stack/versions.env").read_text().splitlines():
    m = re.match(r"^([A-Z0-9_]+)=(\S+)$", line.strip())
    if m:
        pins[m.group(1)] = m.group(2)

problems, checked = [], 0


def agree(path, text, offset, name, value):
    global checked
    checked += 1
    if value != pins[name]:
        line = text.count("\n", 0, offset) + 1
        problems.append(f"{path.relative_to(root)}:{line}: {name} is {value} there, stack/versions.env pins {pins[name]}")


# Defaults that must equal the pins, by variable name.
sources = [(root / "docker-compose.yml", r"\$\{([A-Z0-9_]+):-([^}]+)\}")]
sources += [(p, r"^ARG ([A-Z0-9_]+)=(\S+)$") for p in sorted((root / "docker").glob("*.Dockerfile"))]
for path, pattern in sources:
    text = path.read_text()
    for m in re.finditer(pattern, text, re.MULTILINE):
        if m.group(1) in pins:
            agree(path, text, m.start(), m.group(1), m.group(2))

go_mod = root / "stack/go.mod"
text = go_mod.read_text()
for name, module in [("LAKEFS_VERSION", "github.com/treeverse/lakefs"), ("VERSITYGW_VERSION", "github.com/versity/versitygw")]:
    m = re.search(rf"^\s*{re.escape(module)} v(\S+)", text, re.MULTILINE)
    if m:
        agree(go_mod, text, m.start(), name, m.group(1))
    else:
        problems.append(f"stack/go.mod: {module} is missing, stack/versions.env pins {pins[name]}")

# Versions quoted in prose, comments and code: (pattern whose group 1 is the version, pin).
V = r"(\d+(?:\.\d+)+)"
QUOTES = [
    (rf"\bmlflow=={V}", "MLFLOW_VERSION"),
    (rf"\bMLflow {V}", "MLFLOW_VERSION"),
    (rf"\bmlflow_version: {V}", "MLFLOW_VERSION"),
    (rf"mlflow/mlflow:v{V}", "MLFLOW_VERSION"),
    (r'\bMLFLOW_VERSION: &str = "([^"]+)"', "MLFLOW_VERSION"),
    (rf"\blakeFS {V}", "LAKEFS_VERSION"),
    (rf"treeverse/lakefs:{V}", "LAKEFS_VERSION"),
    (rf"\bversitygw {V}", "VERSITYGW_VERSION"),
    (rf"versity/versitygw:v{V}", "VERSITYGW_VERSION"),
    (r"\bPostgreSQL (\d+)\b(?!\.)", "POSTGRES_MAJOR"),
    (r"\bpostgresql-(\d+)\b", "POSTGRES_MAJOR"),
    (rf"\bbusybox:{V}", "BUSYBOX_VERSION"),
    (rf"\blakefs=={V}", "LAKEFS_PY_VERSION"),
    (rf"\blakefs-sdk=={V}", "LAKEFS_SDK_VERSION"),
    (rf"\blakefs-spec=={V}", "LAKEFS_SPEC_VERSION"),
    (rf"\bonnxruntime=={V}", "ONNXRUNTIME_VERSION"),
    (rf"\bpsycopg2(?:-binary)?=={V}", "PSYCOPG2_VERSION"),
    (rf"\bboto3=={V}", "BOTO3_VERSION"),
    (rf"\bsetuptools=={V}", "SETUPTOOLS_VERSION"),
    (rf"\btorch=={V}", "TORCH_VERSION"),
    (rf"\b(?:lib)?torch {V}", "TORCH_VERSION"),
    (rf"seg-mlops/torch-{V}", "TORCH_VERSION"),
]
TEXT = {".md", ".rs", ".sh", ".py", ".toml", ".yml", ".yaml", ".txt", ".env", ".example", ".Dockerfile"}
quoted = [root / "README.md", root / ".env.example"]
for top in ["docs", "scripts", "tests", "crates", "bins", "python", "configs", "docker"]:
    quoted += [p for p in sorted((root / top).rglob("*")) if p.is_file() and "target" not in p.parts and p.suffix in TEXT]
for path in quoted:
    if not path.is_file():
        continue
    text = path.read_text(errors="replace")
    for pattern, name in QUOTES:
        for m in re.finditer(pattern, text):
            agree(path, text, m.start(), name, m.group(1))

for p in problems:
    print(f"check-pins: {p}", file=sys.stderr)
if problems or checked == 0:
    sys.exit(1)
print(f"check-pins: {checked} versions in docker-compose.yml, docker/, stack/go.mod, README.md and the sources agree with stack/versions.env")

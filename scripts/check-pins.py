"""Checks that every version default in docker-compose.yml and docker/*.Dockerfile equals the pin
of stack/versions.env, the one place versions are set (the test command runs this).
Prints one line per pin checked; exits 1 naming each file, variable and both values that differ."""
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
sources = [(root / "docker-compose.yml", r"\$\{([A-Z0-9_]+):-([^}]+)\}")]
sources += [(p, r"^ARG ([A-Z0-9_]+)=(\S+)$") for p in sorted((root / "docker").glob("*.Dockerfile"))]
for path, pattern in sources:
    for m in re.finditer(pattern, path.read_text(), re.MULTILINE):
        name, default = m.group(1), m.group(2)
        if name not in pins:
            continue
        checked += 1
        if default != pins[name]:
            problems.append(f"{path.relative_to(root)}: {name} defaults to {default}, stack/versions.env pins {pins[name]}")
go_mod = (root / "stack/go.mod").read_text()
for name, module in [("LAKEFS_VERSION", "github.com/treeverse/lakefs"), ("VERSITYGW_VERSION", "github.com/versity/versitygw")]:
    m = re.search(rf"^\s*{re.escape(module)} v(\S+)", go_mod, re.MULTILINE)
    checked += 1
    if not m or m.group(1) != pins[name]:
        problems.append(f"stack/go.mod: {module} is {m.group(1) if m else 'missing'}, stack/versions.env pins {pins[name]}")
for p in problems:
    print(f"check-pins: {p}", file=sys.stderr)
if problems or checked == 0:
    sys.exit(1)
print(f"check-pins: {checked} version defaults in docker-compose.yml, docker/ and stack/go.mod agree with stack/versions.env")

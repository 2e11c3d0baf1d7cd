#!/usr/bin/env bash
# The values table of charts/multivac-operator/README.md, generated from the
# chart's values.yaml (keys, defaults, and the comment above each key) and
# values.schema.json (types), between <!-- values-table:start/end -->.
#
#   bash hack/chart-docs.sh           rewrite the table
#   bash hack/chart-docs.sh --check   fail (and show the diff) when the README's
#                                     table is not what values.yaml generates
#                                     (hack/lint.sh runs this)
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$MULTIVAC_ROOT"

mode="write"
case "${1:-}" in
  --check) mode="check" ;;
  "") ;;
  *) die "usage: hack/chart-docs.sh [--check]" ;;
esac

py=python3
if ! "$py" -c 'import yaml' 2>/dev/null; then
  py="$MULTIVAC_CACHE/tools/hadolint-venv/bin/python"
  "$py" -c 'import yaml' 2>/dev/null || die "PyYAML is missing: run \`bash hack/deps/tools.sh\` (or \`apt-get install python3-yaml\`)"
fi

MODE="$mode" "$py" - <<'PY'
import difflib, json, os, re, sys
import yaml

CHART = "charts/multivac-operator"
README = f"{CHART}/README.md"
values = yaml.safe_load(open(f"{CHART}/values.yaml"))
schema = json.load(open(f"{CHART}/values.schema.json"))

def resolve(s):
    while s and "$ref" in s:
        s = schema["definitions"][s["$ref"].split("/")[-1]]
    return s or {}

def sub_schema(path):
    s = schema
    for key in path:
        s = resolve(s).get("properties", {}).get(key, {})
    return resolve(s)

def comments():
    """{dotted key: the comment lines right above it} from values.yaml."""
    out, stack, pending = {}, [], []
    for line in open(f"{CHART}/values.yaml"):
        text = line.rstrip("\n")
        stripped = text.strip()
        if not stripped:
            pending = []
            continue
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("#").strip())
            continue
        m = re.match(r"^( *)([A-Za-z0-9_.-]+):", text)
        if not m:
            pending = []
            continue
        indent = len(m.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, m.group(2)))
        out[".".join(k for _, k in stack)] = " ".join(pending)
        pending = []
    return out

def type_of(s, v):
    t = s.get("type")
    if isinstance(t, list):
        t = " or ".join(t)
    if "enum" in s:
        t = "one of " + ", ".join(f"`{x}`" for x in s["enum"])
    return t or type(v).__name__

def rows(node, path, notes, out):
    for key, v in node.items():
        p = path + [key]
        s = sub_schema(p)
        if isinstance(v, dict) and s.get("properties") and v:
            rows(v, p, notes, out)
            continue
        default = json.dumps(v, separators=(", ", ": "))
        desc = notes.get(".".join(p), "") or s.get("description", "")
        if not desc and key in ("enabled", "repository"):
            # The comment above the map says what it is, and so what enabling it does.
            desc = notes.get(".".join(path), "") or sub_schema(path).get("description", "")
        desc = desc.replace("|", "&#124;").replace("<", "&lt;").replace(">", "&gt;")
        out.append(f"| `{'.'.join(p)}` | {type_of(s, v)} | `{default}` | {desc} |")

notes = comments()
lines = ["| Key | Type | Default | Description |", "|---|---|---|---|"]
rows(values, [], notes, lines)
table = ("Generated from `values.yaml` by `hack/chart-docs.sh`; do not edit by hand.\n\n"
         + "\n".join(lines) + "\n")

text = open(README).read()
m = re.search(r"(<!-- values-table:start -->\n)(.*?)(<!-- values-table:end -->)", text, re.S)
if not m:
    sys.exit(f"{README} has no <!-- values-table:start --> / <!-- values-table:end --> markers")
if os.environ["MODE"] == "check":
    if m.group(2) != table:
        sys.stdout.writelines(difflib.unified_diff(m.group(2).splitlines(True), table.splitlines(True),
                                                   README, "generated from values.yaml"))
        sys.exit(f"{README}'s values table is stale: run `bash hack/chart-docs.sh`")
    print(f"{README}: {len(lines) - 2} values, in sync")
elif m.group(2) != table:
    open(README, "w").write(text[:m.start(2)] + table + text[m.end(2):])
    print(f"wrote {len(lines) - 2} values into {README}")
PY

#!/usr/bin/env bash
# Keeps README.md and docs/*.md honest: every claim they make about the CRD, the
# configuration, the repository's files and its tests is checked against the real
# thing, so the documents fail the test command instead of drifting.
#
#   bash hack/docs-check.sh           check; prints "docs: N passed, M failed"
#   bash hack/docs-check.sh --write   regenerate the spec reference table in README.md
#                                     (between <!-- spec-reference:start/end -->) from
#                                     crds/multivacs.multivac.io.yaml, then check
#
# Checks:
#  1. spec reference: the table between the spec-reference markers is exactly what
#     the CRD's `spec` schema generates: every field path with its type, default and
#     validation, and no field the CRD lacks.
#  2. configuration: every MULTIVAC_* variable that `multivac server --help` or
#     `multivac worker --help` (and `multivac-operator --help`) lists is in the
#     matching README table with the same default and the same subcommands, and the
#     tables name no MULTIVAC_* variable the binaries lack.
#  2b. RBAC: the table between <!-- rbac-reference:start/end --> lists exactly the
#     rules of config/rbac/role.yaml (ClusterRole) and
#     config/rbac/leader_election_role.yaml (Role).
#  3. paths: every repository path written in backticks, code blocks or relative
#     links in README.md and docs/*.md exists and is tracked by git (what a fresh
#     clone has). A line that says "planned" may name
#     paths that do not exist yet (and gets a warning once they do).
#  3b. anchors: a link to `#heading` (in the same or another document) names a
#     heading that exists.
#  4. tests: every test cited as `path/to/file.rs::test_name` or `fn test_name`
#     exists (`fn test_name` in that file, or anywhere under app/, contract/ and operator/);
#     docs/debugging.md cites at least one regression test.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$MULTIVAC_ROOT"

mode="check"
case "${1:-}" in
  --write) mode="write" ;;
  "") ;;
  *) die "usage: hack/docs-check.sh [--write]" ;;
esac

# PyYAML parses the CRD. pyenv or venv interpreters do not see Debian's
# python3-yaml, so try PyPI for the interpreter on PATH first.
py=python3
if ! "$py" -c 'import yaml' 2>/dev/null; then
  log "installing PyYAML"
  if ! "$py" -m pip install -q pyyaml >/dev/null 2>&1; then
    apt_install python3-yaml
    py=/usr/bin/python3
  fi
  "$py" -c 'import yaml' 2>/dev/null || die "PyYAML is missing: run \`python3 -m pip install pyyaml\` or \`apt-get install python3-yaml\`"
fi

# --help of each binary, with no MULTIVAC_* variable set so clap shows the
# built-in defaults. A built debug binary is used when it is newer than the
# sources (the test command builds it before running this); else cargo builds it.
target="${CARGO_TARGET_DIR:-target}"
help_dir="$(mktemp -d)"
trap 'rm -rf "$help_dir"' EXIT

fresh_bin() { # fresh_bin BIN SRC_DIR...: is BIN present and newer than every source (and the shared contract crate)?
  local bin="$1"; shift
  [ -x "$bin" ] || return 1
  [ -z "$(find "$@" contract Cargo.lock -newer "$bin" -type f -print -quit 2>/dev/null)" ]
}

run_help() { # run_help OUT PACKAGE BIN SRC_DIR ARGS...
  local out="$1" pkg="$2" bin="$3" src="$4"; shift 4
  local cmd
  if fresh_bin "$target/debug/$bin" "$src"; then
    cmd=("$target/debug/$bin")
  else
    cmd=(cargo run -q -p "$pkg" --bin "$bin" --)
  fi
  # shellcheck disable=SC2046
  if ! env $(compgen -e | grep '^MULTIVAC_' | grep -v -e '^MULTIVAC_ROOT$' -e '^MULTIVAC_CACHE$' | sed 's/^/-u /') \
      "${cmd[@]}" "$@" --help >"$out" 2>"$out.err"; then
    echo "could not run \`${cmd[*]} $* --help\`: $(tail -n 3 "$out.err")" >"$out.fail"
  fi
}

run_help "$help_dir/server" multivac multivac app server
run_help "$help_dir/worker" multivac multivac app worker
if [ -d operator/src ] && grep -q '\[\[bin\]\]' operator/Cargo.toml; then
  run_help "$help_dir/operator" multivac-operator multivac-operator operator
fi

MODE="$mode" HELP_DIR="$help_dir" "$py" - <<'PY'
import glob, json, os, re, sys
import yaml

ROOT = os.getcwd()
CRD = "crds/multivacs.multivac.io.yaml"
README = "README.md"
DOCS = [README] + sorted(glob.glob("docs/*.md"))
HELP_DIR = os.environ["HELP_DIR"]
MODE = os.environ["MODE"]

passed = 0
failures = []
warnings = []

def ok(cond, msg):
    global passed
    if cond:
        passed += 1
    else:
        failures.append(msg)
    return cond

def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()

def section(text, name):
    """The text between <!-- name:start --> and <!-- name:end -->, or None."""
    m = re.search(r"<!-- %s:start -->\n(.*?)<!-- %s:end -->" % (name, name), text, re.S)
    return m.group(1) if m else None

def table_rows(block):
    """Rows of the markdown tables in block, as lists of stripped cells (header and rule skipped)."""
    rows = []
    for line in block.splitlines():
        line = line.strip()
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip("|"))]
        if all(re.fullmatch(r":?-+:?", c) for c in cells):
            continue
        rows.append(cells)
    return rows[1:] if rows else rows  # drop the header row

def code(s):
    return "`%s`" % s

# ---------------------------------------------------------------- 1. spec reference

# Kubernetes core types embedded in the spec: documented as one row, since their
# fields are Kubernetes' own (the reader follows the link in the type column).
K8S_TYPES = [
    ({"limits", "requests"}, "[`ResourceRequirements`](https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/#resources)"),
]

def k8s_type(schema):
    props = set((schema.get("properties") or {}).keys())
    for sig, name in K8S_TYPES:
        if sig <= props:
            return name
    return None

def esc(s):
    return s.replace("|", "\\|")

def one_line(desc):
    desc = (desc or "").strip()
    # The first paragraph only: the rest is for `kubectl explain`.
    desc = desc.split("\n\n")[0]
    if len(desc) > 160:  # Kubernetes' own long descriptions: the first sentence is enough
        desc = re.split(r"(?<=\.)\s", desc)[0]
    return esc(" ".join(desc.split()))

def type_of(s):
    k = k8s_type(s)
    if k:
        return k
    if s.get("x-kubernetes-int-or-string"):
        return "int or string"
    t = s.get("type")
    if isinstance(t, list):
        t = "/".join(x for x in t if x != "null")
    if "enum" in s:
        return "enum"
    if t == "array":
        it = s.get("items") or {}
        return "[]" + ("object" if it.get("properties") else (type_of(it) or "any"))
    if t == "object" and "additionalProperties" in s and not s.get("properties"):
        ap = s["additionalProperties"]
        return "map[string]" + (type_of(ap) if isinstance(ap, dict) else "any")
    if t == "integer" and s.get("format"):
        return "integer (%s)" % s["format"]
    if not t and ("anyOf" in s or "oneOf" in s):
        return "any of: " + ", ".join(type_of(x) or "?" for x in (s.get("anyOf") or s.get("oneOf")))
    return t or "any"

def fmt_default(s, required):
    if "default" in s:
        d = json.dumps(s["default"], separators=(",", ":"))
        if isinstance(s["default"], dict) and len(d) > 40:
            return "see fields"
        return code(d if not isinstance(s["default"], str) else s["default"]) if d != '""' else code('""')
    return "required" if required else "unset"

def validation(s):
    out = []
    if "enum" in s:
        out.append("one of " + ", ".join(code(v) for v in s["enum"] if v is not None))
    for key, label in (("minimum", ">="), ("maximum", "<="), ("exclusiveMinimum", ">"), ("exclusiveMaximum", "<")):
        v = s.get(key)
        if isinstance(v, bool):  # OpenAPI v3.0 style flags go with minimum/maximum
            continue
        if v is not None:
            if key == "minimum" and s.get("exclusiveMinimum") is True:
                label = ">"
            if key == "maximum" and s.get("exclusiveMaximum") is True:
                label = "<"
            out.append("%s %s" % (label, int(v) if isinstance(v, float) and v.is_integer() else v))
    for key, label in (("minLength", "length >="), ("maxLength", "length <="),
                       ("minItems", "items >="), ("maxItems", "items <=")):
        if key in s:
            out.append("%s %s" % (label, s[key]))
    if "pattern" in s:
        out.append("matches " + code(s["pattern"]))
    for rule in s.get("x-kubernetes-validations") or []:
        out.append(code(rule["rule"]) + (" (%s)" % rule["message"] if rule.get("message") else ""))
    return esc("; ".join(out))

def walk(schema, prefix, rows):
    required = set(schema.get("required") or [])
    for name, sub in sorted((schema.get("properties") or {}).items()):
        path = prefix + name
        rows.append((path, type_of(sub), fmt_default(sub, name in required), validation(sub), one_line(sub.get("description"))))
        if k8s_type(sub):
            continue
        if sub.get("properties"):
            walk(sub, path + ".", rows)
        elif sub.get("type") == "array" and (sub.get("items") or {}).get("properties"):
            walk(sub["items"], path + "[].", rows)

def spec_reference(crd):
    version = next(v for v in crd["spec"]["versions"] if v.get("storage", True))
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rows = []
    walk(spec, "", rows)
    lines = [
        "Generated from `%s` by `hack/docs-check.sh --write` (`%s/%s`, kind `%s`); do not edit by hand." % (
            CRD, crd["spec"]["group"], version["name"], crd["spec"]["names"]["kind"]),
        "",
        "| Field | Type | Default | Validation | Description |",
        "|---|---|---|---|---|",
    ]
    for path, t, d, v, desc in rows:
        lines.append("| %s | %s | %s | %s | %s |" % (code(path), t, d, v, desc))
    rules = spec.get("x-kubernetes-validations") or []
    if rules:
        lines += ["", "Rules on the whole `spec` (checked by the API server):", ""]
        for r in rules:
            lines.append("- %s%s" % (code(r["rule"]), ": " + r["message"] if r.get("message") else ""))
    return "\n".join(lines) + "\n", rows

readme = read(README)
if not os.path.exists(CRD):
    ok(False, "%s is missing: generate it with `cargo run -q -p multivac-operator --bin crdgen > %s`" % (CRD, CRD))
else:
    crd = yaml.safe_load(read(CRD))
    generated, rows = spec_reference(crd)
    current = section(readme, "spec-reference")
    if current is None:
        ok(False, "README.md has no <!-- spec-reference:start --> / <!-- spec-reference:end --> markers")
    else:
        if MODE == "write" and current != generated:
            readme = readme.replace(current, generated, 1) if current else readme.replace(
                "<!-- spec-reference:start -->\n", "<!-- spec-reference:start -->\n" + generated, 1)
            with open(README, "w", encoding="utf-8") as f:
                f.write(readme)
            print("docs: wrote the spec reference (%d fields) into README.md" % len(rows))
            current = generated
        documented = {}
        for cells in table_rows(current):
            if cells and cells[0].startswith("`"):
                documented[cells[0].strip("`")] = cells
        for path, t, d, v, desc in rows:
            cells = documented.get(path)
            if ok(cells is not None, "README spec reference lacks field `spec.%s` (run `bash hack/docs-check.sh --write`)" % path):
                ok(len(cells) > 2 and cells[2] == d,
                   "README spec reference: `spec.%s` default is %s there but %s in the CRD (run `bash hack/docs-check.sh --write`)"
                   % (path, cells[2] if len(cells) > 2 else "missing", d))
        crd_paths = {r[0] for r in rows}
        for path in documented:
            ok(path in crd_paths, "README spec reference documents `spec.%s`, which the CRD does not have" % path)
        ok(current == generated, "README spec reference differs from what the CRD generates (run `bash hack/docs-check.sh --write`)")

# ---------------------------------------------------------------- 2. configuration

def help_options(text):
    """{VAR: default or None} for every option of a clap --help text that has [env: VAR]."""
    opts = {}
    blocks = re.split(r"\n(?=\s{0,6}(?:-\w, )?--[\w-]+)", text)
    for b in blocks:
        # clap wraps long help lines anywhere, even inside [env: ...] and
        # [default: ...]: read each option's text as one line.
        b = " ".join(b.split())
        for m in re.finditer(r"\[env: ?([A-Z0-9_]+)=?[^\]]*\]", b):
            d = re.search(r"\[default: ?([^\]]*)\]", b)
            opts[m.group(1)] = d.group(1).strip() if d else None
    return opts

helps = {}
for name in ("server", "worker", "operator"):
    path = os.path.join(HELP_DIR, name)
    if os.path.exists(path + ".fail"):
        ok(False, read(path + ".fail").strip())
    elif os.path.exists(path):
        helps[name] = help_options(read(path))

def check_config(table_name, subcommands):
    block = section(readme, table_name)
    if not ok(block is not None, "README.md has no <!-- %s:start/end --> table" % table_name):
        return
    doc = {}
    for cells in table_rows(block):
        var = cells[0].strip("`")
        if var.startswith("MULTIVAC_"):
            doc[var] = cells
    seen = {}
    for sub in subcommands:
        for var, default in helps.get(sub, {}).items():
            if var.startswith("MULTIVAC_"):
                seen.setdefault(var, {})[sub] = default
    for var, by_sub in sorted(seen.items()):
        cells = doc.get(var)
        if not ok(cells is not None, "README %s table lacks `%s` (listed by `%s --help`)" % (table_name, var, "`, `".join(sorted(by_sub)))):
            continue
        if len(subcommands) > 1:
            used = {u.strip() for u in cells[1].split(",")}
            ok(used == set(by_sub), "README %s: `%s` is used by %s per the table but by %s per --help"
               % (table_name, var, ", ".join(sorted(used)), ", ".join(sorted(by_sub))))
        # The default cell is `value`, or `value` (sub), `value` (sub) when the
        # subcommands differ; "unset ..." when --help shows no default.
        cell = cells[2] if len(cells) > 2 else ""
        pairs = [] if cell.startswith("unset") else re.findall(r"`([^`]*)`(?:\s*\(([\w, ]+)\))?", cell)
        claimed = {}
        for value, subs in pairs:
            for sub in ([x.strip() for x in subs.split(",")] if subs else by_sub):
                claimed.setdefault(sub, value)
        for sub, default in sorted(by_sub.items()):
            if default is None:
                ok(sub not in claimed, "README %s: `%s` has no default in `%s --help`, but the table says %s" % (table_name, var, sub, cell))
            else:
                ok(claimed.get(sub) == default, "README %s: `%s` default is %s in the table but `%s` in `%s --help`"
                   % (table_name, var, cell or "missing", default, sub))
    for var in sorted(doc):
        ok(var in seen, "README %s documents `%s`, which no --help lists" % (table_name, var))

if ("server" in helps or "worker" in helps) and not any(
        os.path.exists(os.path.join(HELP_DIR, n + ".fail")) for n in ("server", "worker")):
    check_config("config-reference", ["server", "worker"])
# When a --help could not run, that failure is reported above; comparing its
# table against nothing would only add noise.
if not os.path.exists(os.path.join(HELP_DIR, "operator.fail")) and (
        helps.get("operator") or section(readme, "operator-config-reference") is not None):
    check_config("operator-config-reference", ["operator"])

# ---------------------------------------------------------------- 2b. RBAC

# The README's RBAC table (between rbac-reference markers) against the kustomize
# rules (config/rbac/, which hack/lint.sh keeps equal to the chart's): one row
# per rule, same group, resources, resource names and verbs, in both directions.
RBAC_FILES = {"ClusterRole": "config/rbac/role.yaml", "Role": "config/rbac/leader_election_role.yaml"}

def rule_key(kind, group, resources, names, verbs):
    return (kind, group, tuple(sorted(resources)), tuple(sorted(names)), tuple(sorted(verbs)))

def fmt_rule(k):
    return "%s %s %s%s: %s" % (k[0], k[1] or "core", ",".join(k[2]), " (%s)" % ",".join(k[3]) if k[3] else "", ",".join(k[4]))

block = section(readme, "rbac-reference")
if block is not None:
    actual = set()
    for kind, path in RBAC_FILES.items():
        if not ok(os.path.exists(path), "%s is missing (the README's RBAC table is checked against it)" % path):
            continue
        for obj in yaml.safe_load_all(read(path)):
            if not obj or obj.get("kind") != kind:
                continue
            for r in obj.get("rules") or []:
                for g in r.get("apiGroups") or [""]:
                    actual.add(rule_key(kind, g, r.get("resources") or [], r.get("resourceNames") or [], r.get("verbs") or []))
    documented = set()
    for cells in table_rows(block):
        if len(cells) < 4:
            continue
        kind = "Role" if "(Role)" in cells[0] else "ClusterRole"
        groups = re.findall(r"`([^`]+)`", cells[0]) or ([""] if "core" in cells[0] else [])
        if "core" in re.sub(r"`[^`]*`", "", cells[0]):
            groups.append("")
        res_part, _, names_part = cells[1].partition("(")
        resources = re.findall(r"`([^`]+)`", res_part)
        names = re.findall(r"`([^`]+)`", names_part)
        verbs = [v.strip() for v in cells[2].split(",") if v.strip()]
        for g in groups:
            documented.add(rule_key(kind, g, resources, names, verbs))
    for k in sorted(actual):
        ok(k in documented, "README RBAC table lacks the rule %s (from %s)" % (fmt_rule(k), RBAC_FILES[k[0]]))
    for k in sorted(documented - actual):
        ok(False, "README RBAC table documents %s, which %s does not grant" % (fmt_rule(k), RBAC_FILES[k[0]]))

# ---------------------------------------------------------------- 3. paths and 4. tests

ROOTS = {"app", "contract", "operator", "hack", "crds", "charts", "config", "docs", ".ci", ".gitlab-ci.yml",
         "Makefile", "Cargo.toml", "Cargo.lock", "Dockerfile.app", "Dockerfile.operator", "README.md"}

def candidate_paths(line):
    """Words of inline code, code blocks and relative links on line that name repository paths."""
    words = []
    for span in re.findall(r"`([^`]+)`", line):
        words += span.split()
    for target in re.findall(r"\]\(([^)#\s]+)", line):
        if not re.match(r"\w+:", target):
            words.append(target)
    return words

def normalize(word):
    word = word.strip("'\"(),;")
    word = re.sub(r"[.:,]+$", "", word)
    word = re.sub(r":\d+(-\d+)?$", "", word)  # file.rs:42
    word = word.split("::")[0]               # file.rs::test_name
    if word.startswith("./"):
        word = word[2:]
    return word

def tracked_paths():
    """Files git tracks, and their folders: what a fresh clone (CI) has. None
    outside a git work tree, where the file system is all there is."""
    import subprocess
    try:
        out = subprocess.run(["git", "ls-files", "-z"], capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    paths = set()
    for f in out.decode().split("\0"):
        if not f:
            continue
        parts = f.split("/")
        for i in range(1, len(parts) + 1):
            paths.add("/".join(parts[:i]))
    return paths

TRACKED = tracked_paths()

def path_exists(p):
    p = p.rstrip("/")
    if TRACKED is None:
        return bool(glob.glob(p)) if any(c in p for c in "*?[") else os.path.exists(p)
    if any(c in p for c in "*?["):
        import fnmatch
        return any(fnmatch.fnmatchcase(t, p) for t in TRACKED)
    return p in TRACKED

def untracked_note(p):
    return " (it exists here but git does not track it: commit it, or a fresh clone will not have it)" \
        if TRACKED is not None and os.path.exists(p.rstrip("/")) else ""

tests_cited = {}
for doc in DOCS:
    in_fence = False
    for n, line in enumerate(read(doc).splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
            continue
        words = line.split() if in_fence else candidate_paths(line)
        planned = "planned" in line.lower()
        for w in words:
            p = normalize(w)
            if p.split("/")[0] not in ROOTS or "$" in p or "<" in p:
                continue
            exists = path_exists(p)
            if planned and not exists:
                continue
            if planned and exists and p not in ("README.md",):
                warnings.append("%s:%d: `%s` exists now but the line says planned" % (doc, n, p))
            ok(exists, "%s:%d: `%s` is not in the repository%s" % (doc, n, p, untracked_note(p)))
        for span in ([] if in_fence else re.findall(r"`([^`]+)`", line)):
            m = re.fullmatch(r"([\w./-]+\.rs)::(\w+)", span.strip()) or re.fullmatch(r"fn (\w+)", span.strip())
            if m:
                tests_cited.setdefault(doc, []).append((n, m.groups()))

def rust_files():
    for top in ("app", "contract", "operator"):
        for dirpath, _, files in os.walk(top):
            for f in files:
                path = os.path.join(dirpath, f)
                if f.endswith(".rs") and path_exists(path):
                    yield path

for doc, cites in sorted(tests_cited.items()):
    for n, groups in cites:
        if len(groups) == 2:
            path, name = groups
            files = [path] if path_exists(path) else []
        else:
            path, name = "app/ or operator/", groups[0]
            files = list(rust_files())
        found = any(re.search(r"\bfn\s+%s\b" % re.escape(name), read(f)) for f in files)
        ok(found, "%s:%d: test `%s` is not defined in %s" % (doc, n, name, path))

# In-page links (#anchor) and links to another document's heading
# (docs/x.md#anchor) must name a heading that exists (GitHub/GitLab slugs).
def slugs(path):
    out, in_fence = set(), False
    for line in read(path).splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        elif not in_fence and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            slug = re.sub(r"[^\w\- ]", "", title).replace(" ", "-")
            out.add(slug)
    return out

for doc in DOCS:
    base = os.path.dirname(doc)
    for n, line in enumerate(read(doc).splitlines(), 1):
        for target, frag in re.findall(r"\]\(([^)#\s]*)#([^)\s]+)\)", line):
            if re.match(r"\w+:", target):
                continue
            page = os.path.normpath(os.path.join(base, target)) if target else doc
            if ok(path_exists(page), "%s:%d: link to %s, which is not in the repository" % (doc, n, page)):
                ok(frag in slugs(page), "%s:%d: no heading for #%s in %s" % (doc, n, frag, page))

if os.path.exists("docs/debugging.md"):
    ok(tests_cited.get("docs/debugging.md"),
       "docs/debugging.md cites no regression test (write them as `app/tests/FILE.rs::test_name`)")

for w in warnings:
    print("warning: " + w)
for f in failures:
    print("FAIL: " + f)
print("docs: %d passed, %d failed" % (passed, len(failures)))
sys.exit(1 if failures else 0)
PY

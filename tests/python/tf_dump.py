"""Parse every Terraform file under a directory and dump it as JSON for tests/deploy_terraform.rs.

Terraform cannot be installed on the development machines, so the Rust test reads the
configuration through python-hcl2 (pinned in scripts/requirements-test.txt) instead, and
checks layout rules of `terraform fmt` that a line scanner can see (indentation by bracket
depth, `=` alignment of consecutive one-line attributes, no tabs or trailing spaces), following
hclwrite's own algorithm. It does not evaluate expressions.

Usage: .venv/bin/python tests/python/tf_dump.py TERRAFORM_DIR  > dump.json
Output: {"files": {"<path relative to TERRAFORM_DIR>": {"ok": bool, "error": str|null,
         "body": <parsed, string literals unquoted>, "fmt": [str, ...]}}}
"""

import json
import os
import sys

import hcl2

META_KEYS = {"__is_block__", "__comments__", "__inline_comments__"}


def unquote(s):
    """python-hcl2 8 keeps a literal's quotes ("\"x\""); expressions stay ${...}."""
    if len(s) >= 2 and s[0] == '"' and s[-1] == '"':
        try:
            return json.loads(s)
        except ValueError:
            return s[1:-1]
    return s


def clean(node):
    if isinstance(node, dict):
        return {unquote(k): clean(v) for k, v in node.items() if k not in META_KEYS}
    if isinstance(node, list):
        return [clean(v) for v in node]
    if isinstance(node, str):
        return unquote(node)
    return node


def tokens(line):
    """The line's code as (kind, text) pairs: strings collapsed to one token, comments dropped.

    Template interpolations inside strings count as brackets, as hclwrite counts them."""
    out = []
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c == "#" or line.startswith("//", i):
            break
        if c == '"':
            j, depth = i + 1, 0
            while j < n:
                if line[j] == "\\":
                    j += 2
                    continue
                if line.startswith("${", j) or line.startswith("%{", j):
                    out.append(("open", "${"))
                    depth += 1
                    j += 2
                    continue
                if line[j] == "}" and depth > 0:
                    out.append(("close", "}"))
                    depth -= 1
                elif line[j] == '"' and depth == 0:
                    break
                j += 1
            out.append(("str", line[i : j + 1]))
            i = j + 1
            continue
        if c in "([{":
            out.append(("open", c))
        elif c in ")]}":
            out.append(("close", c))
        elif c == "=":
            prev = line[i - 1] if i > 0 else ""
            nxt = line[i + 1] if i + 1 < n else ""
            if nxt in "=>" or prev in "=!<>":
                pass
            else:
                out.append(("eq", c))
        elif not c.isspace():
            out.append(("word", c))
        i += 1
    return out


def net(toks):
    return sum(1 if k == "open" else -1 if k == "close" else 0 for k, _ in toks)


def fmt_issues(text):
    issues = []
    lines = text.split("\n")
    if not text.endswith("\n") or text.endswith("\n\n"):
        issues.append("file must end with exactly one newline")
    indents = []
    chain = []  # (lineno, lead width, column of '=')

    def close_chain():
        if chain:
            want = max(w for _, w, _ in chain) + 1
            for lineno, _, col in chain:
                if col != want:
                    issues.append(f"line {lineno}: '=' at column {col + 1}, terraform fmt aligns it at {want + 1}")
        chain.clear()

    for idx, raw in enumerate(lines[:-1] if text.endswith("\n") else lines, start=1):
        if "\t" in raw:
            issues.append(f"line {idx}: tab character")
        if raw != raw.rstrip():
            issues.append(f"line {idx}: trailing whitespace")
        stripped = raw.strip()
        if not stripped:
            close_chain()
            continue
        toks = tokens(raw)
        change = net(toks)
        if change > 0:
            want = 2 * len(indents)
            indents.append(change)
        elif change < 0:
            closed = -change
            while closed > 0 and indents:
                if closed > indents[-1]:
                    closed -= indents.pop()
                elif closed < indents[-1]:
                    indents[-1] -= closed
                    closed = 0
                else:
                    indents.pop()
                    closed = 0
            want = 2 * len(indents)
        else:
            want = 2 * len(indents)
        have = len(raw) - len(raw.lstrip(" "))
        if have != want:
            issues.append(f"line {idx}: indented {have} spaces, terraform fmt uses {want}")
        # hclwrite: the first '=' after the first token starts the assign cell when the rest
        # of the line is a whole expression (brackets balanced).
        eq_at = next((i for i, (k, _) in enumerate(toks) if k == "eq"), None)
        if eq_at is not None and eq_at > 0 and net(toks[eq_at:]) == 0:
            col = col_of_eq(raw)
            lead = raw[:col].rstrip()
            chain.append((idx, len(lead), col))
        else:
            close_chain()
    close_chain()
    return issues


def col_of_eq(raw):
    """Column of the first assignment '=' outside strings."""
    in_str, depth, i = False, 0, 0
    while i < len(raw):
        c = raw[i]
        if in_str:
            if c == "\\":
                i += 2
                continue
            if raw.startswith("${", i):
                depth += 1
            elif c == "}" and depth:
                depth -= 1
            elif c == '"' and not depth:
                in_str = False
        elif c == '"':
            in_str = True
        elif c == "=" and raw[i + 1 : i + 2] not in ("=", ">") and raw[i - 1 : i] not in ("=", "!", "<", ">"):
            return i
        i += 1
    return -1


def main():
    root = sys.argv[1]
    files = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.endswith(".tf"):
                continue
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            with open(path, encoding="utf-8") as f:
                text = f.read()
            entry = {"ok": True, "error": None, "body": None, "fmt": fmt_issues(text)}
            try:
                with open(path, encoding="utf-8") as f:
                    entry["body"] = clean(hcl2.load(f))
            except Exception as e:  # noqa: BLE001 - any parse failure is reported, not raised
                entry["ok"] = False
                entry["error"] = f"{type(e).__name__}: {e}"
            files[rel] = entry
    json.dump({"files": files}, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Checks the Markdown docs (README.md, BENCHMARKS.md, CHANGELOG.md, docs/*.md) against the repository
# and the binary:
#   - every link (inline, reference, image, autolink, bare URL, also a URL in a code block) stays inside
#     the repository and names a file that exists; an #anchor into a Markdown file names one of its
#     headings;
#   - README.md has at most 200 lines;
#   - every `lanrage WORD` in a code span or block is a subcommand the binary's --help lists (and
#     `lanrage wg WORD`, `lanrage ca WORD` one of theirs), and every --option right after such a
#     command is one its --help lists;
#   - every subcommand (and sub-subcommand) of --help is named in docs/CLI.md, and every option of
#     each (its --help) too;
#   - every key of the agent configuration's parser (Sources/Agent/AgentConfiguration.swift) is named
#     in docs/CONFIGURATION.md, and every key of its Keys table is one the parser knows.
# Failures name the file and line; exit 1 on any.
#   Tests/Scripts/check-docs.sh [LANRAGE_BINARY]   (default .build/debug/lanrage)
set -uo pipefail
given=${1:-.build/debug/lanrage}
[ $# -gt 0 ] && [ -e "$1" ] && binary=$(realpath "$1") || binary=$given
cd "$(dirname "$0")/../.."
[ -x "$binary" ] || { echo "FAIL: no binary at $binary (swift build --product lanrage)"; exit 1; }
command -v python3 >/dev/null || { echo "FAIL: python3 is missing (apt-get install python3)"; exit 1; }
exec python3 - "$(realpath "$binary")" "$given" <<'PYTHON'
import os, re, subprocess, sys

binary, shown = sys.argv[1], sys.argv[2]
root = os.getcwd()
README_LIMIT = 200
files = ["README.md", "BENCHMARKS.md", "CHANGELOG.md"] + sorted(
    os.path.join("docs", name) for name in os.listdir("docs") if name.endswith(".md"))
files = [f for f in files if os.path.isfile(f)]
failures = []
checked = {"links": 0, "commands": 0, "options": 0, "keys": 0}

def fail(path, line, message):
    failures.append(f"{path}:{line}: {message}")

# --- The binary's commands and options, from --help. -------------------------------------------
def help_text(*words):
    result = subprocess.run([binary, *words, "--help"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    return result.stdout + result.stderr

def commands_of(text):
    """The names under COMMANDS: in a help text."""
    names, inside = [], False
    for line in text.splitlines():
        if line.startswith("COMMANDS:"):
            inside = True
        elif inside and re.match(r"^  [a-z]", line):
            names.append(line.split()[0])
        elif inside and line.strip() == "":
            if names:
                inside = False
    return names

def options_of(text):
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", text.split("OPTIONS:", 1)[-1]))

top = help_text()
subcommands = commands_of(top)
if not subcommands:
    print(f"FAIL: {binary} --help lists no commands"); sys.exit(1)
nested = {}      # "wg" -> ["show", "apply", "delete"]
options = {}     # ("wg", "apply") or ("status",) -> {"--json", …}
for sub in subcommands:
    text = help_text(sub)
    options[(sub,)] = options_of(text)
    children = commands_of(text)
    if children:
        nested[sub] = children
        for child in children:
            options[(sub, child)] = options_of(help_text(sub, child))

# --- Markdown scanning. ------------------------------------------------------------------------
def slug(heading):
    """GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = "".join(c for c in text if c.isalnum() or c in " -_")
    return text.replace(" ", "-")

anchors = {}
def anchors_of(path):
    if path not in anchors:
        found, seen, fence = set(), {}, False
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if re.match(r"^\s*(```|~~~)", line):
                    fence = not fence
                    continue
                match = None if fence else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
                if match:
                    base = slug(match.group(1))
                    count = seen.get(base, 0)
                    seen[base] = count + 1
                    found.add(base if count == 0 else f"{base}-{count}")
        anchors[path] = found
    return anchors[path]

def check_target(path, number, target):
    checked["links"] += 1
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("//"):
        fail(path, number, f"link points outside the repository: {target}")
        return
    if target.startswith("/"):
        fail(path, number, f"link is an absolute path, not one inside the repository: {target}")
        return
    file_part, _, fragment = target.partition("#")
    if file_part:
        resolved = os.path.realpath(os.path.join(os.path.dirname(path), file_part))
        if os.path.commonpath([resolved, root]) != root:
            fail(path, number, f"link leaves the repository: {target}")
            return
        if not os.path.exists(resolved):
            fail(path, number, f"link names a file that does not exist: {target}")
            return
    else:
        resolved = os.path.realpath(path)
    if fragment and resolved.endswith(".md") and os.path.isfile(resolved):
        if fragment not in anchors_of(resolved):
            fail(path, number, f"link names no heading of {os.path.relpath(resolved, root)}: #{fragment}")

LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
AUTOLINK = re.compile(r"<((?:https?|ftp|mailto):[^>\s]+)>")
BARE_URL = re.compile(r"(?<![\w(<])((?:https?|ftp)://[^\s)>\]]+)")
SPAN = re.compile(r"(`+)(.+?)\1")

# A lanrage command in code: `lanrage WORD` where a command starts — at the start of the code (after a
# shell prompt), or after a pipe, a list operator, `(`, `$(`, a quote — not `service lanrage start`.
COMMAND = re.compile(r"(?:^\s*(?:\S*[$#]\s+)?|(?:\|\||&&|\$\(|[|;(`'\"])\s*)(?:(?:sudo|exec|time)\s+)?"
                     r"(?:[A-Z_][A-Z0-9_]*=\S*\s+)*lanrage[ \t]+([a-z][a-z0-9-]*)(?=$|[\s`|;)\],'\"])")
# Where a command's arguments end: a pipe, a list operator, a comment, the end of the code span.
END_OF_COMMAND = re.compile(r"\s\|\s|\|\||&&|;|\s#|`")

def known(word, parents=()):
    """Whether `lanrage [parents…] word` is a command the binary's --help lists (or names, like 'help')."""
    if not parents:
        return word in subcommands or f"lanrage {word} " in top
    return word in nested.get(parents[0], []) or word == "help"

def check_code(path, number, code):
    for match in COMMAND.finditer(code):
        word = match.group(1)
        if not known(word):
            fail(path, number, f"'lanrage {word}' is not a subcommand of lanrage (--help lists {', '.join(subcommands)})")
            continue
        checked["commands"] += 1
        rest = code[match.end():]
        end = END_OF_COMMAND.search(rest)
        tokens = (rest[:end.start()] if end else rest).split()
        key = (word,)
        if word in nested and tokens and re.fullmatch(r"[a-z][a-z0-9-]*", tokens[0]):
            if not known(tokens[0], key):
                fail(path, number, f"'lanrage {word} {tokens[0]}' is not a subcommand of lanrage {word} "
                                   f"(--help lists {', '.join(nested[word])})")
                continue
            if tokens[0] != "help":
                key = (word, tokens[0])
            tokens = tokens[1:]
        for token in tokens:
            for option in re.findall(r"(?:^|[\[(|])(--[a-z][a-z0-9-]*)", token):
                checked["options"] += 1
                if option not in options.get(key, set()):
                    fail(path, number, f"'lanrage {' '.join(key)}' has no option {option} (not in its --help)")

def scan(path):
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if path == "README.md" and len(lines) > README_LIMIT:
        fail(path, len(lines), f"README.md has {len(lines)} lines, more than {README_LIMIT}: move detail to docs/")
    fence = None
    pending, pending_line = "", 0
    for number, line in enumerate(lines, 1):
        opener = re.match(r"^\s*(```+|~~~+)", line)
        if fence is not None:
            if opener and opener.group(1)[0] == fence[0] and len(opener.group(1)) >= len(fence) and line.strip() == opener.group(1):
                fence = None
                if pending:
                    check_code(path, pending_line, pending)
                    pending = ""
                continue
            for target in BARE_URL.findall(line):
                fail(path, number, f"URL points outside the repository: {target}")
            # Shell continuation lines belong to the command before them.
            if pending:
                pending += " " + line.rstrip("\\").strip()
            else:
                pending, pending_line = line.rstrip("\\"), number
            if not line.rstrip().endswith("\\"):
                check_code(path, pending_line, pending)
                pending = ""
            continue
        if opener:
            fence = opener.group(1)
            continue
        prose = line
        for span in SPAN.finditer(line):
            check_code(path, number, span.group(2))
        prose = SPAN.sub(" ", line)
        for target in LINK.findall(prose):
            check_target(path, number, target)
        reference = REFERENCE.match(prose)
        if reference:
            check_target(path, number, reference.group(1))
        for target in AUTOLINK.findall(prose):
            fail(path, number, f"link points outside the repository: {target}")
        for target in BARE_URL.findall(LINK.sub(" ", AUTOLINK.sub(" ", prose))):
            fail(path, number, f"URL points outside the repository: {target}")
    if fence is not None:
        fail(path, len(lines), "code block not closed")

for path in files:
    scan(path)

# --- Every subcommand in docs/CLI.md. ----------------------------------------------------------
cli = "docs/CLI.md"
if os.path.isfile(cli):
    text = open(cli, encoding="utf-8").read()
    for sub in subcommands:
        if not re.search(rf"lanrage {re.escape(sub)}(?![\w-])", text):
            fail(cli, 1, f"'lanrage {sub}' (in --help) is not documented")
        for child in nested.get(sub, []):
            if not re.search(rf"lanrage {re.escape(sub)} {re.escape(child)}(?![\w-])", text):
                fail(cli, 1, f"'lanrage {sub} {child}' (in --help) is not documented")
    for key, names in options.items():
        for option in sorted(names - {"--help"}):
            if not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text):
                fail(cli, 1, f"'lanrage {' '.join(key)} {option}' (in --help) is not documented")
else:
    fail(cli, 1, "missing: every subcommand must be documented there")

# --- The configuration keys: the parser's and docs/CONFIGURATION.md's, both ways. ----------------
parser, configuration = "Sources/Agent/AgentConfiguration.swift", "docs/CONFIGURATION.md"
if os.path.isfile(parser) and os.path.isfile(configuration):
    source = open(parser, encoding="utf-8").read()
    parsed = set(re.findall(r'case \("([a-z]+)", "([a-z]+)"\)', source))
    text = open(configuration, encoding="utf-8").read()
    named = {word.lower() for span in re.findall(r"`([^`]+)`", text) for word in re.findall(r"\b[A-Z][A-Za-z]*\b", span)}
    for section, key in sorted(parsed):
        if key not in named:
            fail(configuration, 1, f"[{section}] key '{key}' (the parser knows it) is not documented")
    section = None
    for number, line in enumerate(text.split("\n"), 1):
        row = re.match(r"^\|\s*(`\[([A-Za-z]+)\]`)?\s*\|\s*(.+?)\s*\|", line)
        if not row or row.group(3) in ("Key", "---"):
            continue
        if row.group(2):
            section = row.group(2).lower()
        for key in re.findall(r"`([A-Z][A-Za-z]*)`", row.group(3)):
            if section and (section, key.lower()) not in parsed:
                fail(configuration, number, f"[{section}] {key} is not a key the parser ({parser}) knows")
    checked["keys"] = len(parsed)

for failure in failures:
    print(f"FAIL: {failure}")
print(f"docs: {len(files)} files, {checked['links']} links, {checked['commands']} lanrage commands and "
      f"{checked['options']} of their options checked against {shown}, {checked['keys']} configuration keys"
      + (f": {len(failures)} problem(s)" if failures else ": all good"))
sys.exit(1 if failures else 0)
PYTHON

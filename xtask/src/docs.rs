//! Checks on README.md and docs/: the README stays a front door (≤ 15 KiB), every relative link
//! and anchor resolves, the README's two commands are the ones CI runs, and every
//! `cargo xtask …` command the docs show is one this xtask accepts.
use std::{
    collections::HashSet,
    fs,
    path::{Path, PathBuf},
};

use clap::Parser as _;

use crate::{paths, Cli};

/// The README is an overview; depth goes to docs/ (issue 19 item 6).
const README_MAX_BYTES: usize = 15 * 1024;

/// Documents being written on other branches, linked from the README's list of docs being added.
/// A link to one of these may point at a missing file until that branch is merged; once the file
/// exists it is checked like any other. Delete an entry when its branch is merged.
const PENDING_DOCS: &[&str] = &[];

fn root() -> PathBuf {
    paths::workspace_root()
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()))
}

/// README.md and every Markdown file in docs/.
fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    let docs = root().join("docs");
    let mut in_docs: Vec<PathBuf> = fs::read_dir(&docs)
        .unwrap_or_else(|err| panic!("reading {}: {err}", docs.display()))
        .map(|entry| entry.expect("a docs/ entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    in_docs.sort();
    files.extend(in_docs);
    files
}

/// Lines outside fenced code blocks, with their 1-based numbers.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut in_fence = false;
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if !in_fence {
            lines.push((i + 1, line));
        }
    }
    lines
}

/// Lines inside ```console blocks.
fn console_lines(text: &str) -> Vec<&str> {
    let mut in_console = false;
    let mut in_fence = false;
    let mut lines = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(info) = trimmed.strip_prefix("```") {
            in_console = !in_fence && info.trim() == "console";
            in_fence = !in_fence;
            continue;
        }
        if in_console {
            lines.push(line);
        }
    }
    lines
}

/// Targets of Markdown links and images, `[text](target)`, outside code spans.
fn link_targets(line: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut in_code = false;
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'`' => in_code = !in_code,
            b']' if !in_code && bytes.get(i + 1) == Some(&b'(') => {
                if let Some(len) = line[i + 2..].find(')') {
                    targets.push(line[i + 2..i + 2 + len].to_string());
                    i += 2 + len;
                }
            }
            _ => {}
        }
        i += 1;
    }
    targets
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors a Markdown file's headings make (duplicates get `-1`, `-2`, … as on GitHub).
fn anchors(text: &str) -> HashSet<String> {
    let mut seen = HashSet::new();
    for (_, line) in prose_lines(text) {
        let Some(heading) = line.strip_prefix('#') else {
            continue;
        };
        let base = slug(heading.trim_start_matches('#'));
        let mut anchor = base.clone();
        let mut n = 0;
        while seen.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        seen.insert(anchor);
    }
    seen
}

/// What is wrong with one relative link of `file`, if anything.
fn check_link(file: &Path, target: &str) -> Option<String> {
    if target.contains("://") || target.starts_with("mailto:") {
        return None;
    }
    let (path, anchor) = match target.split_once('#') {
        Some((path, anchor)) => (path, Some(anchor)),
        None => (target, None),
    };
    let dir = file.parent().expect("a file in a directory");
    let resolved = if path.is_empty() {
        file.to_path_buf()
    } else {
        dir.join(path)
    };
    if !resolved.exists() {
        let from_root = resolved.strip_prefix(root()).unwrap_or(&resolved);
        let pending = PENDING_DOCS.iter().any(|doc| from_root == Path::new(doc));
        return (!pending).then(|| format!("`{target}`: {} does not exist", resolved.display()));
    }
    let anchor = anchor?;
    if resolved.extension().is_none_or(|ext| ext != "md") {
        return None;
    }
    (!anchors(&read(&resolved)).contains(anchor)).then(|| {
        format!(
            "`{target}`: no heading in {} makes the anchor #{anchor}",
            resolved.display()
        )
    })
}

#[test]
fn readme_is_a_front_door() {
    let readme = read(&root().join("README.md"));
    assert!(
        readme.len() <= README_MAX_BYTES,
        "README.md is {} bytes, more than {README_MAX_BYTES}: move depth to docs/ and link it",
        readme.len()
    );
}

#[test]
fn every_relative_link_resolves() {
    let mut broken = Vec::new();
    for file in markdown_files() {
        let text = read(&file);
        for (number, line) in prose_lines(&text) {
            for target in link_targets(line) {
                if let Some(why) = check_link(&file, &target) {
                    broken.push(format!("{}:{number}: {why}", file.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn readme_shows_the_commands_ci_runs() {
    let readme = read(&root().join("README.md"));
    let console = console_lines(&readme);
    for command in ["# cargo xtask run -- trace", "# cargo xtask test"] {
        assert!(
            console.iter().any(|line| line.starts_with(command)),
            "README.md shows no `{command}` line in a console block"
        );
    }
    let ci = read(&root().join(".ci/run"));
    assert!(
        ci.lines()
            .any(|line| line.trim() == "exec cargo xtask test"),
        ".ci/run no longer runs `cargo xtask test`, the README's test command"
    );
}

/// `'quoted words'` kept together, as a shell would; enough for the docs' command lines.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut in_word = false;
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

#[test]
fn documented_xtask_commands_parse() {
    let mut checked = 0;
    let mut bad = Vec::new();
    for file in markdown_files() {
        let text = read(&file);
        for line in console_lines(&text) {
            let Some(command) = line
                .strip_prefix("# cargo xtask ")
                .or_else(|| line.strip_prefix("$ cargo xtask "))
            else {
                continue;
            };
            // A trailing `# comment`, and option synopses (`[--routes N]`, `<commit>`), are
            // prose, not arguments.
            // A second command after `&&`, `|` or `>` is not xtask's.
            let command = ["  #", " && ", " | ", " > "]
                .iter()
                .fold(command, |rest, cut| rest.split(cut).next().unwrap_or(rest))
                .trim();
            if command.contains(['[', '<']) {
                continue;
            }
            let args = std::iter::once("cargo-xtask".to_string()).chain(shell_words(command));
            if let Err(err) = Cli::try_parse_from(args) {
                bad.push(format!(
                    "{}: `cargo xtask {command}`: {err}",
                    file.display()
                ));
            }
            checked += 1;
        }
    }
    assert!(
        checked > 10,
        "only {checked} documented xtask commands found"
    );
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn slugs_follow_github() {
    assert_eq!(
        slug(" Can it trace here? `routeguard doctor`"),
        "can-it-trace-here-routeguard-doctor"
    );
    assert_eq!(
        slug(" `[[protect]]`: objects to put back"),
        "protect-objects-to-put-back"
    );
    assert_eq!(slug(" \"events lost\""), "events-lost");
    assert_eq!(
        link_targets("see [a](docs/a.md#x) and `[b](c)` and ![i](p.png)"),
        ["docs/a.md#x", "p.png"]
    );
    assert_eq!(
        shell_words("vm-test -- sh -c 'uname -a; cat x'"),
        ["vm-test", "--", "sh", "-c", "uname -a; cat x"]
    );
}

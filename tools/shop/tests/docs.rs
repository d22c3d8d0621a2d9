//! Every command the README, `docs/` and BENCHMARKS.md show still runs as written. Each `sh` block is
//! read and each command in it (and each `$(…)` inside one) is checked as far as this
//! machine can: a `shop` command (also as `cargo run -p shop -- …`) parses with the
//! real command line; a script, an event file and a function it names exist; a cargo
//! package it names is in the repository. A command that needs AWS, a running stack, a
//! second terminal or a browser is listed in [`CANNOT_RUN_HERE`] with that reason, so a
//! new kind of command fails this test until someone says how it is checked.

use clap::Parser;
use std::path::{Path, PathBuf};

/// Commands this machine cannot run as the docs show them, and why.
const CANNOT_RUN_HERE: &[(&str, &str)] = &[
    (
        "curl",
        "talks to a running API, Stripe or Cognito; tools/shop/tests/local_process.rs makes the same calls",
    ),
    ("aws", "needs an AWS account"),
    ("sam deploy", "deploys to AWS"),
    ("sam delete", "deletes a deployed stack"),
    ("sam validate", "runs in the test command (scripts/test.sh)"),
    ("sam build", "runs in the test command (scripts/test.sh)"),
    ("source", "sets up the developer's shell"),
    (
        "cargo lambda watch",
        "a second terminal; tools/shop/tests/local_process.rs runs it",
    ),
    ("cargo test", "the test command runs every test"),
    ("cargo bench", "a benchmark: BENCHMARKS.md records its runs"),
    ("cargo mutants", "the mutation run: scripts/mutants.sh"),
    (
        "for t in",
        "a loop over a deployed stack's tables; needs an AWS account",
    ),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The documents whose commands are checked.
fn documents() -> Vec<PathBuf> {
    let mut docs = vec![root().join("README.md"), root().join("BENCHMARKS.md")];
    let mut found: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    found.sort();
    docs.extend(found);
    docs
}

/// The lines of each ```sh block, continuation lines joined, comments dropped.
fn commands(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_block = false;
    let mut pending = String::new();
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") {
            in_block = !in_block && trimmed == "```sh";
            continue;
        }
        if !in_block {
            continue;
        }
        let line = match line.find(" # ") {
            Some(at) if !line[..at].contains('\'') => &line[..at],
            _ => line,
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        // A quoted argument spanning lines (a JSON body) goes on.
        if shlex::split(&pending).is_none() {
            pending.push('\n');
            continue;
        }
        out.push(std::mem::take(&mut pending));
    }
    out
}

/// The commands inside `$(…)`, innermost last.
fn substitutions(command: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = command;
    while let Some(start) = rest.find("$(") {
        let after = &rest[start + 2..];
        let mut depth = 1;
        let end = after.char_indices().find_map(|(i, c)| {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            (depth == 0).then_some(i)
        });
        let Some(end) = end else { break };
        found.push(after[..end].to_owned());
        found.extend(substitutions(&after[..end]));
        rest = &after[end + 1..];
    }
    found
}

/// Why `command` does not run as written, if it does not.
fn check(command: &str) -> Option<String> {
    // `VAR=value cmd …` runs cmd; `VAR="$(…)"` alone is checked through its `$(…)`.
    let mut words = shlex::split(command).or_else(|| Some(vec![command.to_owned()]))?;
    while words.first().is_some_and(|w| {
        w.split_once('=').is_some_and(|(k, _)| {
            !k.is_empty() && k.chars().all(|c| c.is_ascii_uppercase() || c == '_')
        })
    }) {
        words.remove(0);
    }
    if words.is_empty() {
        return None;
    }
    let line = words.join(" ");
    let flag = |name: &str| {
        words
            .windows(2)
            .find(|w| w[0] == name)
            .map(|w| w[1].clone())
    };
    let shop_args = match words.as_slice() {
        [first, rest @ ..] if first == "shop" || first.ends_with("target/debug/shop") => {
            Some(rest.to_vec())
        }
        [cargo, run, ..] if cargo == "cargo" && run == "run" && flag("--example").is_none() => {
            let dash = words.iter().position(|w| w == "--")?;
            (flag("-p").as_deref() == Some("shop")).then(|| words[dash + 1..].to_vec())
        }
        _ => None,
    };
    if let Some(args) = shop_args {
        let argv = std::iter::once("shop".to_owned()).chain(args);
        return match shop::cli::Cli::try_parse_from(argv) {
            Ok(_) => None,
            Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => None,
            Err(e) => Some(format!("`shop` refuses it: {}", e.render())),
        };
    }
    match words.as_slice() {
        [cargo, lambda, invoke, function, data, file, ..]
            if cargo == "cargo"
                && lambda == "lambda"
                && invoke == "invoke"
                && data == "--data-file" =>
        {
            let missing: Vec<&String> =
                [root().join("functions").join(function), root().join(file)]
                    .iter()
                    .zip([function, file])
                    .filter(|(path, _)| !path.exists())
                    .map(|(_, name)| name)
                    .collect();
            (!missing.is_empty()).then(|| format!("names what does not exist: {missing:?}"))
        }
        [cargo, verb, ..] if cargo == "cargo" && (verb == "run" || verb == "build") => {
            let package = flag("-p")?;
            if !package_exists(&package) {
                return Some(format!("no package {package} in the workspace"));
            }
            let example = flag("--example")?;
            let found = ["tools", "shared"].iter().any(|group| {
                std::fs::read_dir(root().join(group)).unwrap().any(|dir| {
                    let examples = dir.unwrap().path().join("examples");
                    examples.join(format!("{example}.rs")).is_file()
                })
            });
            (!found).then(|| format!("no example {example}"))
        }
        [first, ..] if first.starts_with("scripts/") || first.starts_with("local/") => {
            let path = root().join(first);
            (!path.is_file()).then(|| format!("{first} does not exist"))
        }
        [python, script, ..] if python.ends_with("python") || python.ends_with("python3") => {
            (!root().join(script).is_file()).then(|| format!("{script} does not exist"))
        }
        _ => {
            let known = CANNOT_RUN_HERE
                .iter()
                .any(|(prefix, _)| line == *prefix || line.starts_with(&format!("{prefix} ")));
            (!known).then(|| {
                "no check knows this command: check it here, or list it in CANNOT_RUN_HERE with the reason"
                    .to_owned()
            })
        }
    }
}

/// Whether a crate of the repository is called `name`.
fn package_exists(name: &str) -> bool {
    ["functions", "shared", "tools", "tests"]
        .iter()
        .any(|group| {
            let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join(group))
                .map(|entries| entries.map(|e| e.unwrap().path()).collect())
                .unwrap_or_default();
            dirs.push(root().join(group));
            dirs.iter()
                .filter_map(|dir| std::fs::read_to_string(dir.join("Cargo.toml")).ok())
                .any(|manifest| manifest.contains(&format!("name = \"{name}\"")))
        })
}

#[test]
fn every_documented_command_runs_as_written() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).unwrap();
        for command in commands(&text) {
            for one in std::iter::once(command.clone()).chain(substitutions(&command)) {
                checked += 1;
                if let Some(why) = check(&one) {
                    failures.push(format!(
                        "{}: `{one}`: {why}",
                        doc.strip_prefix(root()).unwrap_or(&doc).display()
                    ));
                }
            }
        }
    }
    assert!(checked > 60, "the docs' commands were found: {checked}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_wrong_command_is_caught() {
    assert!(check("shop saga show ord-1 --stak prod").is_some());
    assert!(check("shop sagas list").is_some());
    assert!(check("cargo run -p shop -- dlq peek OrdersDLQ --local").is_none());
    assert!(check("scripts/no-such-script.sh").is_some());
    assert!(
        check("cargo lambda invoke payments --data-file events/payments/missing.json").is_some()
    );
    assert!(
        check("rm -rf /").is_some(),
        "an unknown command is not waved through"
    );
    assert!(check("cargo build -p no-such-crate").is_some());
    assert!(check("cargo run --release -p shop --example no_such_bench").is_some());
    assert!(check("cargo run --release -p shop --example bench_local -- 200 10").is_none());
    assert_eq!(
        substitutions(r#"TOKEN="$(cargo run -q -p shop -- token --customer me)""#),
        ["cargo run -q -p shop -- token --customer me"]
    );
    assert_eq!(
        commands("```sh\nshop saga show ord-1 \\\n  --local   # a comment\n```\n"),
        ["shop saga show ord-1  --local"]
    );
    assert_eq!(
        commands("```sh\ncurl -d '{\"a\": 1,\n  \"b\": 2}'\n```\n"),
        ["curl -d '{\"a\": 1,\n\"b\": 2}'"]
    );
}

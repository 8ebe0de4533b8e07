//! What both binaries share on the command line: documented exit codes,
//! errors printed as one line, `--json` or text output, shell completions
//! and the `config --print-default` listing of a settings struct.
//!
//! Scripts branch on the exit code, so every failure is classified here
//! once (from the gRPC status or the connection error in the error's
//! chain) instead of at each call site.

use std::io::Write;
use std::process::ExitCode;

/// The exit codes of `coordinator` and `edge-node`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Done.
    Ok = 0,
    /// Any other failure: a bad file, a bad configuration, a failed job.
    Failure = 1,
    /// A bad command line (clap's own code).
    Usage = 2,
    /// The peer could not be reached or is not serving (connection refused,
    /// timed out, gRPC UNAVAILABLE or DEADLINE_EXCEEDED, health not SERVING).
    Unavailable = 3,
    /// The peer refused who we are: gRPC UNAUTHENTICATED or
    /// PERMISSION_DENIED (a bad API key, certificate or token).
    Denied = 4,
    /// The peer refused the request itself: INVALID_ARGUMENT, NOT_FOUND,
    /// OUT_OF_RANGE, FAILED_PRECONDITION or ALREADY_EXISTS.
    Rejected = 5,
    /// The peer is at its limit (RESOURCE_EXHAUSTED): retry later.
    Overloaded = 6,
}

/// Every exit code with its meaning, as the README and `--help` list them.
pub const EXIT_CODES: &[(Exit, &str)] = &[
    (Exit::Ok, "done"),
    (
        Exit::Failure,
        "any other failure (a bad file, configuration or job)",
    ),
    (Exit::Usage, "bad command line"),
    (
        Exit::Unavailable,
        "the peer cannot be reached or is not serving",
    ),
    (
        Exit::Denied,
        "the peer refused our identity (API key, certificate, token)",
    ),
    (
        Exit::Rejected,
        "the peer refused the request (invalid argument, not found)",
    ),
    (Exit::Overloaded, "the peer is at its limit: retry later"),
];

/// The exit-code table as text for `--help` (`after_help`).
pub fn exit_codes_help() -> String {
    let mut s = String::from("Exit codes:\n");
    for (code, what) in EXIT_CODES {
        s.push_str(&format!("  {}  {what}\n", *code as u8));
    }
    s
}

/// An error that carries its own exit code (e.g. a health check that
/// answered NOT_SERVING).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failed {
    /// How the process exits.
    pub exit: Exit,
    /// The line printed.
    pub message: String,
}

/// An [`anyhow::Error`] that exits with `exit`.
pub fn fail(exit: Exit, message: impl Into<String>) -> anyhow::Error {
    Failed {
        exit,
        message: message.into(),
    }
    .into()
}

/// The exit code of a gRPC status.
pub fn status_exit(code: tonic::Code) -> Exit {
    use tonic::Code as C;
    match code {
        C::Ok => Exit::Ok,
        C::Unavailable | C::DeadlineExceeded => Exit::Unavailable,
        C::Unauthenticated | C::PermissionDenied => Exit::Denied,
        C::InvalidArgument
        | C::NotFound
        | C::OutOfRange
        | C::FailedPrecondition
        | C::AlreadyExists => Exit::Rejected,
        C::ResourceExhausted => Exit::Overloaded,
        _ => Exit::Failure,
    }
}

/// Classifies an error by the first cause in its chain that says more than
/// "failed": a [`Failed`], a gRPC status, a transport or connection error.
pub fn exit_code(err: &anyhow::Error) -> Exit {
    for cause in err.chain() {
        if let Some(f) = cause.downcast_ref::<Failed>() {
            return f.exit;
        }
        if let Some(s) = cause.downcast_ref::<tonic::Status>() {
            return status_exit(s.code());
        }
        if cause.downcast_ref::<tonic::transport::Error>().is_some() {
            return Exit::Unavailable;
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            if matches!(
                io.kind(),
                K::ConnectionRefused
                    | K::ConnectionReset
                    | K::ConnectionAborted
                    | K::TimedOut
                    | K::HostUnreachable
                    | K::NetworkUnreachable
                    | K::AddrNotAvailable
            ) {
                return Exit::Unavailable;
            }
        }
    }
    Exit::Failure
}

/// A gRPC code as words: `ResourceExhausted` → `resource exhausted`.
fn code_words(code: tonic::Code) -> String {
    let name = format!("{code:?}");
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push(' ');
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// The error as one line: its causes joined by ": ", a gRPC status as
/// `code words: message` (not tonic's debug dump with metadata), causes
/// that only repeat the previous one dropped, newlines folded.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let (text, inner) = match cause.downcast_ref::<tonic::Status>() {
            Some(s) => (
                format!("{}: {}", code_words(s.code()), s.message()),
                s.message().to_owned(),
            ),
            None => {
                let t = cause.to_string();
                (t.clone(), t)
            }
        };
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let inner = inner.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() {
            continue;
        }
        // thiserror messages often embed their source ("cannot connect: {0}").
        if parts.last().is_some_and(|p| p.contains(&inner)) {
            continue;
        }
        parts.push(text);
    }
    parts.join(": ")
}

/// Ends `main`: prints an error as `error: ...` on one line and exits with
/// its code.
pub fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = exit_code(&e);
            let _ = writeln!(std::io::stderr(), "error: {}", one_line(&e));
            ExitCode::from(code as u8)
        }
    }
}

/// Where a command's result goes: pretty JSON on stdout with `--json`, the
/// human text otherwise. Progress and notes go to stderr either way, so
/// stdout under `--json` is always one JSON document.
#[derive(Debug, Clone, Copy, Default)]
pub struct Out {
    /// `--json` was given.
    pub json: bool,
}

impl Out {
    /// Prints `value` as JSON, or the text `text` makes.
    pub fn emit(
        &self,
        value: &impl serde::Serialize,
        text: impl FnOnce() -> String,
    ) -> anyhow::Result<()> {
        let mut stdout = std::io::stdout().lock();
        if self.json {
            serde_json::to_writer_pretty(&mut stdout, value)?;
            writeln!(stdout)?;
        } else {
            write!(stdout, "{}", text())?;
        }
        stdout.flush()?;
        Ok(())
    }
}

/// Writes the completion script of `cmd` for `shell` to stdout.
pub fn completions<C: clap::CommandFactory>(shell: clap_complete::Shell, bin: &str) {
    clap_complete::generate(shell, &mut C::command(), bin, &mut std::io::stdout());
}

/// One key of a settings struct, read off its clap definition.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SettingDoc {
    /// The settings-file key (the flag's long name in snake_case).
    pub key: String,
    /// The TOML table it lives under in the file (`cost`), if any.
    pub table: Option<String>,
    /// The flag.
    pub flag: String,
    /// Its environment variable.
    pub env: Option<String>,
    /// The default as documented (`[default: ...]` in the help), if any.
    pub default: Option<String>,
    /// The help text without the default.
    pub doc: String,
    /// Only a flag or variable, never read from the file (secrets, the
    /// file's own path).
    pub flag_only: bool,
}

/// Every setting of `cmd` (a `clap::Args` struct's command): `tables` maps
/// a key to its TOML table, `flag_only` lists keys the file does not take.
pub fn settings(
    cmd: &clap::Command,
    tables: &[(&str, &str)],
    flag_only: &[&str],
) -> Vec<SettingDoc> {
    cmd.get_arguments()
        .filter(|a| a.get_long().is_some())
        .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
        .map(|a| {
            let long = a.get_long().unwrap_or_default();
            let key = long.replace('-', "_");
            let help = a
                .get_long_help()
                .or(a.get_help())
                .map(|h| h.to_string())
                .unwrap_or_default();
            let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
            let (doc, default) = match help.rfind("[default: ") {
                Some(i) => {
                    let rest = &help[i + "[default: ".len()..];
                    let end = rest.find(']').unwrap_or(rest.len());
                    let d = rest[..end].trim().to_owned();
                    let doc = format!(
                        "{}{}",
                        help[..i].trim_end(),
                        rest[end..].trim_start_matches(']')
                    );
                    (doc.trim().to_owned(), Some(d))
                }
                None => {
                    let d = a
                        .get_default_values()
                        .first()
                        .map(|v| v.to_string_lossy().into_owned());
                    (help.clone(), d)
                }
            };
            SettingDoc {
                table: tables
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, t)| (*t).to_owned()),
                flag: format!("--{long}"),
                env: a.get_env().map(|e| e.to_string_lossy().into_owned()),
                default,
                doc,
                flag_only: flag_only.contains(&key.as_str()),
                key,
            }
        })
        .collect()
}

/// A documented default as a TOML value, when it is one (a number, a
/// boolean, or a single word such as `cost` or `127.0.0.1:50050`); None
/// for prose such as "all logical CPUs" or "off".
fn toml_value(default: &str) -> Option<String> {
    if default.parse::<f64>().is_ok() || default == "true" || default == "false" {
        return Some(default.to_owned());
    }
    let word = !default.is_empty()
        && !default.contains(' ')
        && !matches!(default, "off" | "none")
        && !default.starts_with('~')
        && default
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".:-_/".contains(c));
    word.then(|| format!("{default:?}"))
}

/// The settings as a TOML file a user can start from: each key with its
/// doc and environment variable as comments, set to its default where the
/// default is a value and commented out where it is not (no default, or a
/// computed one). Loading the output as the settings file changes nothing.
pub fn render_defaults(settings: &[SettingDoc]) -> String {
    let mut tables: Vec<Option<String>> = Vec::new();
    for s in settings {
        if !tables.contains(&s.table) {
            tables.push(s.table.clone());
        }
    }
    tables.sort_by_key(|t| t.is_some());
    let mut out = String::new();
    for table in tables {
        if let Some(t) = &table {
            out.push_str(&format!("\n[{t}]\n"));
        }
        for s in settings.iter().filter(|s| s.table == table) {
            out.push_str(&format!("\n# {}\n", s.doc));
            let env = s
                .env
                .as_deref()
                .map(|e| format!(", ${e}"))
                .unwrap_or_default();
            if s.flag_only {
                out.push_str(&format!(
                    "# {}{env} only; not read from this file\n",
                    s.flag
                ));
                continue;
            }
            out.push_str(&format!("# {}{env}\n", s.flag));
            match s.default.as_deref().and_then(toml_value) {
                Some(v) => out.push_str(&format!("{} = {v}\n", s.key)),
                None => out.push_str(&format!(
                    "# {} = ...  (default: {})\n",
                    s.key,
                    s.default.as_deref().unwrap_or("unset")
                )),
            }
        }
    }
    out.trim_start().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_their_codes() {
        let e = |s: tonic::Status| exit_code(&anyhow::Error::new(s));
        assert_eq!(e(tonic::Status::unavailable("x")), Exit::Unavailable);
        assert_eq!(e(tonic::Status::unauthenticated("x")), Exit::Denied);
        assert_eq!(e(tonic::Status::invalid_argument("x")), Exit::Rejected);
        assert_eq!(e(tonic::Status::resource_exhausted("x")), Exit::Overloaded);
        assert_eq!(e(tonic::Status::internal("x")), Exit::Failure);
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(
            exit_code(&anyhow::Error::new(refused).context("connect")),
            Exit::Unavailable
        );
        assert_eq!(
            exit_code(&fail(Exit::Unavailable, "not serving").context("health")),
            Exit::Unavailable
        );
        assert_eq!(exit_code(&anyhow::anyhow!("bad file")), Exit::Failure);
    }

    #[test]
    fn a_status_prints_as_one_clean_line() {
        let mut s = tonic::Status::unauthenticated("unknown API key\nrevoked");
        s.metadata_mut().insert("x-secret", "v".parse().unwrap());
        let e = anyhow::Error::new(s).context("ask");
        let line = one_line(&e);
        assert_eq!(line, "ask: unauthenticated: unknown API key revoked");
        assert!(!line.contains("metadata") && !line.contains('\n'));
    }

    #[derive(Debug, thiserror::Error)]
    #[error("cannot reach it: {0}")]
    struct Wraps(#[source] std::io::Error);

    #[test]
    fn a_source_repeated_in_its_wrapper_is_said_once() {
        let e = anyhow::Error::new(Wraps(std::io::Error::other("refused")));
        assert_eq!(one_line(&e), "cannot reach it: refused");
    }

    #[derive(clap::Parser)]
    struct Demo {
        /// Address to serve on [default: 127.0.0.1:1].
        #[arg(long, env = "DEMO_LISTEN")]
        listen: Option<String>,
        /// Threads [default: all logical CPUs].
        #[arg(long)]
        threads: Option<u32>,
        /// Bandwidth, Hz [default: 10000].
        #[arg(long)]
        bandwidth_hz: Option<f64>,
        /// A secret.
        #[arg(long)]
        key: Option<String>,
        /// A switch.
        #[arg(long)]
        insecure: bool,
    }

    #[test]
    fn defaults_render_as_toml_that_parses_and_lists_every_key() {
        use clap::CommandFactory;
        let s = settings(&Demo::command(), &[("bandwidth_hz", "cost")], &["key"]);
        assert_eq!(s.len(), 5);
        let text = render_defaults(&s);
        let v: toml::Table = toml::from_str(&text).expect(&text);
        assert_eq!(v["listen"].as_str(), Some("127.0.0.1:1"));
        assert_eq!(v["cost"]["bandwidth_hz"].as_integer(), Some(10000));
        assert!(!v.contains_key("threads") && !v.contains_key("key"));
        assert!(
            text.contains("# threads = ...  (default: all logical CPUs)"),
            "{text}"
        );
        assert!(text.contains("$DEMO_LISTEN"), "{text}");
        assert!(text.contains("# Address to serve on\n"), "{text}");
    }
}

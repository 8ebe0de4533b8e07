//! The cluster's admin commands, run beside a live coordinator on its
//! state directory: `ca` (init, issue, list, revoke), `token` (create,
//! list, revoke), `key` (create, list, revoke). They edit the files under
//! a lock; the coordinator sees each change on the next call.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use netmoe_common::pki::ca::{LEAF_DAYS, Validity, now_s};
use netmoe_common::pki::{Ca, PkiError, Role, TlsDir, files};

use netmoe_common::cli::{Exit, Out, fail};
use serde_json::json;

use crate::auth::{keys::Keys, tokens::Tokens};

/// `coordinator ca ...`
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Make a CA and the coordinator's certificate in DIR (keys 0600).
    Init {
        /// The state directory to create.
        dir: PathBuf,
        /// Extra names (hosts or IPs) clients dial the coordinator by;
        /// coordinator.netmoe, localhost and loopback are always in.
        #[arg(long = "name")]
        names: Vec<String>,
    },
    /// Issue a key and certificate for a node or a client into OUT
    /// (ca.pem, node.pem/node.key or client.pem/client.key).
    Issue {
        /// The state directory.
        #[arg(long, env = "NETMOE_TLS_DIR")]
        dir: PathBuf,
        /// A node id (nodes may also join with a token instead).
        #[arg(long, conflicts_with = "client", required_unless_present = "client")]
        node: Option<String>,
        /// A client name.
        #[arg(long)]
        client: Option<String>,
        /// Where to write the files.
        #[arg(long)]
        out: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = LEAF_DAYS)]
        days: i64,
    },
    /// List every certificate issued.
    List {
        /// The state directory.
        #[arg(long, env = "NETMOE_TLS_DIR")]
        dir: PathBuf,
    },
    /// Revoke the certificates of a holder name or a serial; the
    /// coordinator refuses them from its next call on.
    Revoke {
        /// Serial (hex) or holder name.
        which: String,
        /// The state directory.
        #[arg(long, env = "NETMOE_TLS_DIR")]
        dir: PathBuf,
    },
}

/// `coordinator token ...`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a one-time join token (ID.SECRET.CA_SHA256).
    Create {
        /// The state directory.
        #[arg(long, env = "NETMOE_TLS_DIR")]
        dir: PathBuf,
        /// How long it stays valid, e.g. 15m, 2h (at most 7 days).
        #[arg(long, default_value = "15m")]
        ttl: humantime::Duration,
        /// A note for `token list`.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List tokens (ids and states; secrets are not stored).
    List {
        /// The state directory.
        #[arg(long, env = "NETMOE_TLS_DIR")]
        dir: PathBuf,
    },
    /// Revoke a token by id.
    Revoke {
        /// Token id.
        id: String,
        /// The state directory.
        #[arg(long, env = "NETMOE_TLS_DIR")]
        dir: PathBuf,
    },
}

/// `coordinator key ...`
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Print a new API key for NAME (shown once; only its hash is stored).
    Create {
        /// Who it is for.
        #[arg(long)]
        name: String,
        /// The state directory.
        #[arg(long, env = "NETMOE_TLS_DIR")]
        dir: PathBuf,
    },
    /// List keys (ids, names, states).
    List {
        /// The state directory.
        #[arg(long, env = "NETMOE_TLS_DIR")]
        dir: PathBuf,
    },
    /// Revoke keys by id or name.
    Revoke {
        /// Key id or name.
        which: String,
        /// The state directory.
        #[arg(long, env = "NETMOE_TLS_DIR")]
        dir: PathBuf,
    },
}

fn state(revoked: Option<i64>, not_after: i64, now: i64) -> &'static str {
    match revoked {
        Some(_) => "revoked",
        None if now > not_after => "expired",
        None => "valid",
    }
}

/// Issues `role` `name` into `out` as a TLS directory of that role.
pub fn issue_into(
    ca: &Ca,
    role: Role,
    name: &str,
    out: &Path,
    days: i64,
) -> Result<TlsDir, PkiError> {
    let issued = ca.issue(role, name, Validity::days(days))?;
    let stem = TlsDir::stem(role);
    files::write_secret(
        &out.join(format!("{stem}.key")),
        issued.key_pem.as_deref().unwrap_or_default().as_bytes(),
    )?;
    files::write_public(
        &out.join(format!("{stem}.pem")),
        issued.chain_pem.as_bytes(),
    )?;
    files::write_public(&out.join("ca.pem"), ca.cert_pem().as_bytes())?;
    TlsDir::load(out, role)
}

/// Runs `coordinator ca ...`.
pub fn ca(cmd: CaCommand, out: Out) -> anyhow::Result<()> {
    match cmd {
        CaCommand::Init { dir, names } => {
            let ca = Ca::init(&dir, &names)?;
            let d = dir.display();
            out.emit(
                &json!({"dir": dir, "ca_sha256": ca.fingerprint()}),
                || {
                    format!(
                        "CA made in {d} (sha256 {})\n\
                         serve:        coordinator serve --tls-dir {d}\n\
                         join a node:  coordinator token create --dir {d} --ttl 15m\n\
                         a client:     coordinator ca issue --dir {d} --client NAME --out DIR; coordinator key create --dir {d} --name NAME\n",
                        ca.fingerprint()
                    )
                },
            )
        }
        CaCommand::Issue {
            dir,
            node,
            client,
            out: to,
            days,
        } => {
            let ca = Ca::load(&dir)?;
            let (role, name) = match (node, client) {
                (Some(n), None) => (Role::Node, n),
                (None, Some(c)) => (Role::Client, c),
                _ => anyhow::bail!("give exactly one of --node ID or --client NAME"),
            };
            let tls = issue_into(&ca, role, &name, &to, days)?;
            out.emit(
                &json!({"role": role.to_string(), "name": tls.me.name, "serial": tls.me.serial,
                        "not_after": tls.me.not_after, "dir": to}),
                || {
                    format!(
                        "{} {} certificate {} (valid until {}) in {}\n",
                        role,
                        tls.me.name,
                        tls.me.serial,
                        tls.me.not_after,
                        to.display()
                    )
                },
            )
        }
        CaCommand::List { dir } => {
            let now = now_s();
            let records = Ca::load(&dir)?.records()?;
            let rows: Vec<_> = records
                .iter()
                .map(|r| {
                    json!({"serial": r.serial, "role": r.role.to_string(), "name": r.name,
                           "not_after": r.not_after, "state": state(r.revoked_at, r.not_after, now)})
                })
                .collect();
            out.emit(&rows, || {
                let mut t = format!(
                    "{:<34} {:<12} {:<24} {:>12} state\n",
                    "serial", "role", "name", "not_after"
                );
                for r in &records {
                    t.push_str(&format!(
                        "{:<34} {:<12} {:<24} {:>12} {}\n",
                        r.serial,
                        r.role,
                        r.name,
                        r.not_after,
                        state(r.revoked_at, r.not_after, now)
                    ));
                }
                t
            })
        }
        CaCommand::Revoke { which, dir } => {
            let hit = Ca::load(&dir)?.revoke(&which)?;
            if hit.is_empty() {
                return Err(fail(
                    Exit::Rejected,
                    format!("no certificate in force matches {which:?}"),
                ));
            }
            let rows: Vec<_> = hit
                .iter()
                .map(|r| json!({"serial": r.serial, "role": r.role.to_string(), "name": r.name}))
                .collect();
            out.emit(&json!({"revoked": rows}), || {
                hit.iter()
                    .map(|r| format!("revoked {} {} ({})\n", r.role, r.name, r.serial))
                    .collect()
            })
        }
    }
}

/// Runs `coordinator token ...`.
pub fn token(cmd: TokenCommand, out: Out) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create {
            dir,
            ttl,
            description,
        } => {
            let ca = Ca::load(&dir)?;
            let ttl_s = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
            let (rec, half) = Tokens::new(&dir).create(ttl_s, &description)?;
            eprintln!("join token {} valid for {ttl} (one node, once):", rec.id);
            let token = format!("{half}.{}", ca.fingerprint());
            out.emit(
                &json!({"id": rec.id, "token": token, "expires": rec.expires}),
                || format!("{token}\n"),
            )
        }
        TokenCommand::List { dir } => {
            let now = now_s();
            let list = Tokens::new(&dir).list()?;
            let rows: Vec<_> = list
                .iter()
                .map(|t| {
                    json!({"id": t.id, "expires": t.expires, "state": t.state(now).to_string(),
                           "description": t.description})
                })
                .collect();
            out.emit(&rows, || {
                let mut s = format!(
                    "{:<8} {:>12} {:<24} description\n",
                    "id", "expires", "state"
                );
                for t in &list {
                    s.push_str(&format!(
                        "{:<8} {:>12} {:<24} {}\n",
                        t.id,
                        t.expires,
                        t.state(now),
                        t.description
                    ));
                }
                s
            })
        }
        TokenCommand::Revoke { id, dir } => {
            if !Tokens::new(&dir).revoke(&id)? {
                return Err(fail(Exit::Rejected, format!("no token {id:?}")));
            }
            out.emit(&json!({"revoked": id}), || format!("revoked token {id}\n"))
        }
    }
}

/// Runs `coordinator key ...`.
pub fn key(cmd: KeyCommand, out: Out) -> anyhow::Result<()> {
    match cmd {
        KeyCommand::Create { name, dir } => {
            let (rec, key) = Keys::new(&dir).create(&name)?;
            eprintln!(
                "API key {} for {name} (shown once; send as `authorization: Bearer KEY`):",
                rec.id
            );
            out.emit(&json!({"id": rec.id, "name": name, "key": key}), || {
                format!("{key}\n")
            })
        }
        KeyCommand::List { dir } => {
            let list = Keys::new(&dir).list()?;
            let st = |revoked: bool| if revoked { "revoked" } else { "valid" };
            let rows: Vec<_> = list
                .iter()
                .map(|k| {
                    json!({"id": k.id, "name": k.name, "created": k.created,
                           "state": st(k.revoked_at.is_some())})
                })
                .collect();
            out.emit(&rows, || {
                let mut s = format!("{:<10} {:<24} {:>12} state\n", "id", "name", "created");
                for k in &list {
                    s.push_str(&format!(
                        "{:<10} {:<24} {:>12} {}\n",
                        k.id,
                        k.name,
                        k.created,
                        st(k.revoked_at.is_some())
                    ));
                }
                s
            })
        }
        KeyCommand::Revoke { which, dir } => {
            let n = Keys::new(&dir).revoke(&which)?;
            if n == 0 {
                return Err(fail(
                    Exit::Rejected,
                    format!("no live key matches {which:?}"),
                ));
            }
            out.emit(&json!({"revoked": n}), || format!("revoked {n} key(s)\n"))
        }
    }
}

//! The cluster's admin commands, run beside a live coordinator on its
//! state directory: `ca` (init, issue, list, revoke), `token` (create,
//! list, revoke), `key` (create, list, revoke). They edit the files under
//! a lock; the coordinator sees each change on the next call.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use netmoe_common::pki::ca::{LEAF_DAYS, Validity, now_s};
use netmoe_common::pki::{Ca, PkiError, Role, TlsDir, files};

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
pub fn ca(cmd: CaCommand) -> anyhow::Result<()> {
    match cmd {
        CaCommand::Init { dir, names } => {
            let ca = Ca::init(&dir, &names)?;
            println!("CA made in {} (sha256 {})", dir.display(), ca.fingerprint());
            println!(
                "serve:        coordinator serve --tls-dir {}",
                dir.display()
            );
            println!(
                "join a node:  coordinator token create --dir {} --ttl 15m",
                dir.display()
            );
            println!(
                "a client:     coordinator ca issue --dir {} --client NAME --out DIR; coordinator key create --dir {} --name NAME",
                dir.display(),
                dir.display()
            );
        }
        CaCommand::Issue {
            dir,
            node,
            client,
            out,
            days,
        } => {
            let ca = Ca::load(&dir)?;
            let (role, name) = match (node, client) {
                (Some(n), None) => (Role::Node, n),
                (None, Some(c)) => (Role::Client, c),
                _ => anyhow::bail!("give exactly one of --node ID or --client NAME"),
            };
            let tls = issue_into(&ca, role, &name, &out, days)?;
            println!(
                "{} {} certificate {} (valid until {}) in {}",
                role,
                tls.me.name,
                tls.me.serial,
                tls.me.not_after,
                out.display()
            );
        }
        CaCommand::List { dir } => {
            let now = now_s();
            println!(
                "{:<34} {:<12} {:<24} {:>12} state",
                "serial", "role", "name", "not_after"
            );
            for r in Ca::load(&dir)?.records()? {
                println!(
                    "{:<34} {:<12} {:<24} {:>12} {}",
                    r.serial,
                    r.role,
                    r.name,
                    r.not_after,
                    state(r.revoked_at, r.not_after, now)
                );
            }
        }
        CaCommand::Revoke { which, dir } => {
            let hit = Ca::load(&dir)?.revoke(&which)?;
            anyhow::ensure!(!hit.is_empty(), "no certificate in force matches {which:?}");
            for r in hit {
                println!("revoked {} {} ({})", r.role, r.name, r.serial);
            }
        }
    }
    Ok(())
}

/// Runs `coordinator token ...`.
pub fn token(cmd: TokenCommand) -> anyhow::Result<()> {
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
            println!("{half}.{}", ca.fingerprint());
        }
        TokenCommand::List { dir } => {
            let now = now_s();
            println!("{:<8} {:>12} {:<24} description", "id", "expires", "state");
            for t in Tokens::new(&dir).list()? {
                println!(
                    "{:<8} {:>12} {:<24} {}",
                    t.id,
                    t.expires,
                    t.state(now),
                    t.description
                );
            }
        }
        TokenCommand::Revoke { id, dir } => {
            anyhow::ensure!(Tokens::new(&dir).revoke(&id)?, "no token {id:?}");
            println!("revoked token {id}");
        }
    }
    Ok(())
}

/// Runs `coordinator key ...`.
pub fn key(cmd: KeyCommand) -> anyhow::Result<()> {
    match cmd {
        KeyCommand::Create { name, dir } => {
            let (rec, key) = Keys::new(&dir).create(&name)?;
            eprintln!(
                "API key {} for {name} (shown once; send as `authorization: Bearer KEY`):",
                rec.id
            );
            println!("{key}");
        }
        KeyCommand::List { dir } => {
            println!("{:<10} {:<24} {:>12} state", "id", "name", "created");
            for k in Keys::new(&dir).list()? {
                let st = if k.revoked_at.is_some() {
                    "revoked"
                } else {
                    "valid"
                };
                println!("{:<10} {:<24} {:>12} {st}", k.id, k.name, k.created);
            }
        }
        KeyCommand::Revoke { which, dir } => {
            let n = Keys::new(&dir).revoke(&which)?;
            anyhow::ensure!(n > 0, "no live key matches {which:?}");
            println!("revoked {n} key(s)");
        }
    }
    Ok(())
}

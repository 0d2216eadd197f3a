//! `batpak serve` and `batpak token`: the store over HTTP, and the tokens file it reads.

use batpak_server::{Limits, Server, TokensFile};

use crate::cli::{ServeArgs, TokenAction};
use crate::commands::{out, print_json};
use crate::{Context, Failure, Outcome};

pub fn serve(ctx: &Context, a: ServeArgs) -> Outcome {
    let tokens = match &a.tokens {
        None => None,
        Some(path) => Some(TokensFile::load(path).map_err(Failure::new)?),
    };
    if tokens.is_none() && !a.addr.ip().is_loopback() && !a.insecure {
        return Err(Failure::new(format!(
            "refusing to listen on {} without --tokens: anyone who reaches it could read and append; give --tokens, listen on 127.0.0.1, or pass --insecure",
            a.addr
        )));
    }
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(cert), Some(key)) => {
            Some(batpak_server::TlsConfig::from_pem_files(cert, key).map_err(Failure::new)?)
        }
        _ => None,
    };
    let store = if a.read_only {
        ctx.open_read()?
    } else {
        ctx.open_write(true)?
    };
    let mut limits = Limits::default();
    limits.max_body_bytes = a.max_body;
    limits.max_page = a.max_page;
    limits.max_batch = a.max_batch;
    limits.max_streams = a.max_streams;
    limits.request_timeout = a.request_timeout;
    limits.stream_lag_limit = a.stream_lag_limit;
    limits.heartbeat = a.heartbeat;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("batpak-serve")
        .build()?;
    let dir = ctx.dir.clone();
    runtime.block_on(async move {
        let mut builder = Server::builder(store)
            .limits(limits)
            .read_only(a.read_only)
            .allow_open_remote(a.insecure);
        if let Some(tokens) = tokens {
            builder = builder.tokens(tokens);
        }
        if let Some(tls) = tls {
            builder = builder.tls(tls);
        }
        if let Some(addr) = a.kurrentdb_addr {
            builder = builder.kurrentdb(addr, &a.kurrentdb_scope);
        }
        if !a.quiet {
            builder = builder.request_log(|line| eprintln!("{line}"));
        }
        let server = builder
            .bind(a.addr)
            .await
            .map_err(|e| Failure::new(e.to_string()))?;
        let addr = server.local_addr()?;
        let scheme = if server.is_tls() { "https" } else { "http" };
        out(&format!(
            "listening on {scheme}://{addr} (store {}{})\n",
            dir.display(),
            if a.read_only { ", read-only" } else { "" }
        ))?;
        if let Some(grpc) = server.kurrentdb_addr() {
            let tls = if server.is_tls() { "true" } else { "false" };
            out(&format!(
                "KurrentDB protocol on kurrentdb://{grpc}?tls={tls}\n"
            ))?;
        }
        server
            .serve()
            .await
            .map_err(|e| Failure::new(e.to_string()))?;
        if !a.quiet {
            eprintln!("batpak serve: stopped; the store is closed");
        }
        Ok(())
    })
}

pub fn token(ctx: &Context, action: TokenAction) -> Outcome {
    match action {
        TokenAction::Add {
            tokens,
            principal,
            grants,
        } => {
            let mut file = if tokens.exists() {
                TokensFile::load(&tokens).map_err(Failure::new)?
            } else {
                TokensFile::default()
            };
            let token = file.add(&principal, grants).map_err(Failure::new)?;
            file.save(&tokens)?;
            if ctx.json {
                return print_json(&serde_json::json!({ "principal": principal, "token": token }));
            }
            out(&format!(
                "{token}\n(the token of {principal:?}; {} keeps only its hash, so keep the token now)\n",
                tokens.display()
            ))
        }
        TokenAction::List { tokens } => {
            let file = TokensFile::load(&tokens).map_err(Failure::new)?;
            if ctx.json {
                let list: Vec<_> = file
                    .tokens
                    .iter()
                    .map(|t| serde_json::json!({ "principal": t.principal, "grants": t.grants }))
                    .collect();
                return print_json(&serde_json::Value::Array(list));
            }
            let mut text = String::new();
            for t in &file.tokens {
                let grants: Vec<String> = t
                    .grants
                    .iter()
                    .map(|g| {
                        let perms: Vec<String> = g
                            .permissions
                            .iter()
                            .map(|p| format!("{p:?}").to_lowercase())
                            .collect();
                        let place = if g.prefix.is_empty() {
                            g.scope.clone()
                        } else {
                            format!("{}/{}", g.scope, g.prefix)
                        };
                        format!("{}@{place}", perms.join(","))
                    })
                    .collect();
                text.push_str(&format!("{}\t{}\n", t.principal, grants.join(" ")));
            }
            out(&text)
        }
    }
}

//! The CLI's people and token commands (`user list|disable|enable|delete`,
//! `token list|create --user`), and the guard that keeps a command from
//! silently creating a second data directory. Every command that takes a
//! person accepts their email or their id.

use std::path::Path;

use anyhow::bail;
use serde_json::json;

use crate::app::App;
use crate::config::Config;
use crate::error::api_to_anyhow;
use crate::store::{AccessToken, TokenKind};

/// Refuses to go on when the command would create a new data directory
/// (a new database, or a new generated key): that happens when it runs
/// from another folder than `serve`, and would silently make a second
/// vault with its own key. `serve` and `migrate` create one on purpose.
pub fn require_existing_data(config: &Config) -> anyhow::Result<()> {
    let dir = &config.data_dir;
    let shown = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
    let default_database = config.database_url.as_ref().is_none_or(|url| url.expose().is_empty());
    let database_missing = default_database && !dir.join("sesame.db").exists();
    let key_missing = config.encryption_key.is_none() && !dir.join("encryption.key").exists();
    if database_missing || key_missing {
        let looked_for = if database_missing { dir.join("sesame.db") } else { dir.join("encryption.key") };
        bail!(
            "no sesame-vault data here: looked for {} (data directory {}). This command would create a new, \
             empty vault with its own key instead of using the server's. Run it from the folder where `serve` \
             runs, or point it at the server's data: SESAME_DATA_DIR=/path/to/data, or --config FILE with \
             `data_dir = \"/path/to/data\"` (and the same DATABASE_URL / ENCRYPTION_KEY as the server). \
             To start a new vault on purpose, run `sesame-vault migrate` first.",
            looked_for.display(),
            Path::new(&shown).display()
        );
    }
    Ok(())
}

fn token_json(t: &AccessToken) -> serde_json::Value {
    json!({
        "id": t.id.as_str(),
        "kind": match t.kind { TokenKind::User => "USER", TokenKind::Runner => "RUNNER" },
        "userId": t.user_id.as_deref(),
        "name": t.name,
        "createdAt": t.created_at,
        "lastUsedAt": t.last_used_at,
        "expiresAt": t.expires_at,
    })
}

/// `token list [--user EMAIL|ID]`.
pub async fn token_list(app: &App, user: Option<&str>, as_json: bool) -> anyhow::Result<()> {
    let user_id = match user {
        Some(who) => Some(app.store.operator_unchecked().find_person(who).await.map_err(api_to_anyhow)?.id),
        None => None,
    };
    let tokens = app.store.operator_unchecked().tokens(user_id.as_deref()).await.map_err(api_to_anyhow)?;
    if as_json {
        println!("{}", serde_json::Value::Array(tokens.iter().map(token_json).collect()));
        return Ok(());
    }
    if tokens.is_empty() {
        println!("no live tokens");
    }
    let at = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(|t| t.to_rfc3339()).unwrap_or_else(|| "-".into());
    for t in &tokens {
        let kind = match t.kind {
            TokenKind::User => "USER",
            TokenKind::Runner => "RUNNER",
        };
        println!(
            "{}  {kind:<6}  user {}  name {}  created {}  last used {}  expires {}",
            t.id.as_str(),
            t.user_id.as_deref().unwrap_or("-"),
            t.name.as_deref().unwrap_or("-"),
            t.created_at.to_rfc3339(),
            at(t.last_used_at),
            at(t.expires_at),
        );
    }
    Ok(())
}

/// `token create --user EMAIL|ID --name N`: how a person with a lost
/// token (or a lost bootstrap admin) gets back in.
pub async fn token_create_for(app: &App, who: &str, name: &str, as_json: bool) -> anyhow::Result<()> {
    let operator = app.store.operator_unchecked();
    let person = operator.find_person(who).await.map_err(api_to_anyhow)?;
    let (token, secret) = operator.create_user_token(&person.id, name).await.map_err(api_to_anyhow)?;
    if as_json {
        let mut value = token_json(&token);
        value["email"] = json!(person.email);
        value["token"] = json!(secret.as_str());
        println!("{value}");
    } else {
        println!("created a token for {} (token id {}, name {})", person.email, token.id.as_str(), name.trim());
        println!("token (shown once): {}", secret.as_str());
    }
    Ok(())
}

/// `user list`.
pub async fn user_list(app: &App, as_json: bool) -> anyhow::Result<()> {
    let people = app.store.operator_unchecked().people().await.map_err(api_to_anyhow)?;
    if as_json {
        let rows: Vec<_> = people
            .iter()
            .map(|p| {
                json!({
                    "id": p.id.as_str(), "email": p.email, "role": p.role.as_str(),
                    "createdAt": p.created_at, "disabledAt": p.disabled_at, "issuer": p.issuer,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return Ok(());
    }
    for p in &people {
        let state = if p.disabled_at.is_some() { "disabled" } else { "enabled" };
        let via = p.issuer.as_deref().map(|i| format!("  signs in via {i}")).unwrap_or_default();
        println!("{}  {:<5}  {state:<8}  {}{via}", p.id.as_str(), p.role.as_str(), p.email);
    }
    Ok(())
}

/// `user disable|enable EMAIL|ID`.
pub async fn user_set_disabled(app: &App, who: &str, disabled: bool) -> anyhow::Result<()> {
    let operator = app.store.operator_unchecked();
    let person = operator.find_person(who).await.map_err(api_to_anyhow)?;
    let person = operator.set_disabled(&person.id, disabled).await.map_err(api_to_anyhow)?;
    let state = if disabled { "disabled" } else { "enabled" };
    println!("{state} {} (id {})", person.email, person.id.as_str());
    Ok(())
}

/// `user readmit EMAIL|SUBJECT`: lifts the tombstone a deleted JWT person left.
pub async fn user_readmit(app: &App, who: &str) -> anyhow::Result<()> {
    let readmitted = app.store.operator_unchecked().readmit(who).await.map_err(api_to_anyhow)?;
    if readmitted.is_empty() {
        bail!("no deleted person who signed in with the IdP has the email or subject {}", who.trim());
    }
    for (email, issuer, subject) in readmitted {
        println!("readmitted {email} (issuer {issuer}, subject {subject}): their next JWT signs them in again");
    }
    Ok(())
}

/// `user delete EMAIL|ID`.
pub async fn user_delete(app: &App, who: &str) -> anyhow::Result<()> {
    let operator = app.store.operator_unchecked();
    let person = operator.find_person(who).await.map_err(api_to_anyhow)?;
    let deleted = operator.delete_person(&person.id).await.map_err(api_to_anyhow)?;
    println!(
        "deleted {} (id {}): {} credentials removed, {} tokens revoked; the audit trail keeps their id and email",
        deleted.email,
        deleted.id.as_str(),
        deleted.credentials,
        deleted.tokens
    );
    Ok(())
}

//! GraphQL glue for task credentials: the runner's handle does the work.

use async_graphql::{Context, ID};

use super::types::{Credential, CredentialFile, CredentialFileInput, EnvVar, TaskCredentials};
use super::{principal, store};
use crate::domain::{Agent, Delivery, Provider};
use crate::error::ApiResult;
use crate::ids::parse_id;
use crate::store::TaskId;

pub async fn issue(
    ctx: &Context<'_>,
    user_id: &ID,
    agent: Agent,
    provider: Option<Provider>,
    task_id: &str,
    delivery: Option<Delivery>,
) -> ApiResult<TaskCredentials> {
    let runner = store(ctx).runner(principal(ctx)?)?;
    // The runner may name the person by email too (`task-env --user`).
    let user_id = if user_id.contains('@') { runner.person_id(user_id).await? } else { parse_id("userId", user_id)? };
    let task = TaskId::parse(task_id)?;
    let issued = runner.issue(&user_id, agent, provider, &task, delivery).await?;
    let delivery = issued.delivery;
    let materialized = issued.materialized;
    Ok(TaskCredentials {
        source: issued.source,
        credential_id: issued.credential_id.map(ID),
        provider: issued.provider,
        env: materialized
            .env
            .iter()
            .map(|e| EnvVar { name: e.name.clone(), value: e.value.expose().to_owned(), home_path: e.home_path })
            .collect(),
        files: materialized
            .files
            .iter()
            .map(|f| CredentialFile {
                path: f.path.clone(),
                mode: f.mode as i32,
                content: f.content.expose().to_owned(),
            })
            .collect(),
        expires_at: issued.expires_at,
        delivery,
    })
}

pub async fn return_files(
    ctx: &Context<'_>,
    task_id: &str,
    files: Vec<CredentialFileInput>,
) -> ApiResult<Vec<Credential>> {
    let runner = store(ctx).runner(principal(ctx)?)?;
    let task = TaskId::parse(task_id)?;
    let files = files.into_iter().map(|f| (f.path, f.content)).collect();
    let apis = super::checks::checker(ctx).apis();
    Ok(runner.return_files(&task, files, apis).await?.into_iter().map(Credential).collect())
}

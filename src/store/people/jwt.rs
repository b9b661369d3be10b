//! People who sign in with the platform's JWTs: found (or created) by
//! (issuer, subject), never by email; they act only through its JWTs (no
//! `sv_` tokens), and once deleted stay out (a tombstone) until the
//! operator readmits them.

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ColumnTrait, Condition, EntityTrait, QueryFilter, Set, TransactionTrait};

use super::{disabled_refusal, JwtPerson, JWT_PEOPLE_HAVE_NO_TOKENS};
use crate::auth::Principal;
use crate::domain::Role;
use crate::entities::{jwt_tombstone, user};
use crate::error::{ApiError, ApiResult};
use crate::ids::new_id;
use crate::store::audit::{self, Action, Actor};
use crate::store::{Email, Store};

/// Refusal of an `sv_` token whose person signs in through the IdP.
pub(in crate::store) fn jwt_person_token() -> ApiError {
    ApiError::Unauthenticated(format!("this sesame-vault token is no longer accepted: {JWT_PEOPLE_HAVE_NO_TOKENS}"))
}

impl Store {
    /// The person a verified JWT stands for, created on their first valid
    /// token. Keyed by (issuer, subject), never by email (emails change and
    /// are reused); the email (and the role, for admins' lists) is updated
    /// from the token. The role of this request is the token's.
    pub async fn person_for_jwt(&self, jwt: &JwtPerson) -> ApiResult<Principal> {
        let find = || {
            user::Entity::find()
                .filter(user::Column::Issuer.eq(jwt.issuer.as_str()))
                .filter(user::Column::Subject.eq(jwt.subject.as_str()))
        };
        let existing = self.jwt_person_row(&jwt.issuer, &jwt.subject).await?;
        let row = match existing {
            Some(row) => row,
            None => match self.create_jwt_person(jwt).await {
                Ok(row) => row,
                // Two first requests at once: the other one created them.
                Err(e) => find().one(self.db()).await?.ok_or(e)?,
            },
        };
        if row.disabled_at.is_some() {
            return Err(disabled_refusal());
        }
        let email = jwt.email.as_deref().map(jwt_email).transpose()?;
        let new_email = email.map(|e| e.0).filter(|e| *e != row.email);
        if new_email.is_some() || row.role != jwt.role.as_str() {
            self.update_jwt_person(&row, new_email, jwt.role).await?;
        }
        Ok(Principal::Person { user_id: row.id, role: jwt.role, token_id: JWT_TOKEN_ID.into() })
    }

    /// The person stored for (issuer, subject): concurrent requests' lookups
    /// share one query.
    async fn jwt_person_row(&self, issuer: &str, subject: &str) -> ApiResult<Option<user::Model>> {
        let key = (issuer.to_owned(), subject.to_owned());
        self.batcher(crate::store::AUTH_WORKERS, |inner| &inner.jwt_people_batch, Store::jwt_people_batch)
            .submit(key)
            .await
    }

    async fn jwt_people_batch(self, keys: Vec<(String, String)>) -> Vec<ApiResult<Option<user::Model>>> {
        use crate::store::batch::{answer_each, distinct};
        // Both columns of the (issuer, subject) index; exact pairs matched below.
        let found = user::Entity::find()
            .filter(user::Column::Issuer.is_in(distinct(keys.iter().map(|k| k.0.as_str()))))
            .filter(user::Column::Subject.is_in(distinct(keys.iter().map(|k| k.1.as_str()))))
            .all(self.reader())
            .await;
        answer_each(&keys, found.map_err(Into::into), |(issuer, subject), rows| {
            rows.iter().find(|r| r.issuer.as_deref() == Some(issuer) && r.subject.as_deref() == Some(subject)).cloned()
        })
    }

    async fn create_jwt_person(&self, jwt: &JwtPerson) -> ApiResult<user::Model> {
        let tombstone =
            jwt_tombstone::Entity::find_by_id((jwt.issuer.clone(), jwt.subject.clone())).one(self.db()).await?;
        if tombstone.is_some() {
            return Err(ApiError::Unauthenticated(
                "this person was deleted from the vault by an administrator and is not created again by a new \
                 sign-in; the operator can let them back in on the vault's host (`sesame-vault user readmit EMAIL`)"
                    .into(),
            ));
        }
        let Some(email) = jwt.email.as_deref() else {
            return Err(ApiError::Unauthenticated(match jwt.email_unverified {
                true => "the token's email is not verified (its email_verified claim is not true), and a person's \
                         first sign-in needs a verified email; verify it at the identity provider (or, if the IdP \
                         never sends email_verified, the operator sets SESAME_AUTH__JWT__REQUIRE_EMAIL_VERIFIED=false)"
                    .into(),
                false => "the token has no email claim, which a person's first sign-in needs \
                          (SESAME_AUTH__JWT__EMAIL_CLAIM)"
                    .into(),
            }));
        };
        let email = jwt_email(email)?;
        let txn = self.db().begin().await?;
        if user::Entity::find().filter(user::Column::Email.eq(email.0.as_str())).one(&txn).await?.is_some() {
            return Err(email_taken());
        }
        let row = user::ActiveModel {
            id: Set(new_id()),
            email: Set(email.0),
            role: Set(jwt.role.as_str().to_owned()),
            created_at: Set(Utc::now()),
            disabled_at: Set(None),
            issuer: Set(Some(jwt.issuer.clone())),
            subject: Set(Some(jwt.subject.clone())),
        }
        .insert(&txn)
        .await?;
        audit::record(
            &txn,
            Actor::System,
            Action::UserCreated,
            audit::Entry {
                owner_id: Some(&row.id),
                detail: Some(format!("role {} (first sign-in with a JWT from {})", jwt.role, jwt.issuer)),
                ..Default::default()
            },
        )
        .await?;
        txn.commit().await?;
        Ok(row)
    }

    async fn update_jwt_person(&self, row: &user::Model, email: Option<String>, role: Role) -> ApiResult<()> {
        let txn = self.db().begin().await?;
        if let Some(email) = &email {
            let taken = user::Entity::find()
                .filter(user::Column::Email.eq(email.as_str()))
                .filter(user::Column::Id.ne(row.id.as_str()))
                .one(&txn)
                .await?;
            if taken.is_some() {
                return Err(email_taken());
            }
        }
        let mut active: user::ActiveModel = row.clone().into();
        if let Some(email) = email {
            active.email = Set(email);
        }
        active.role = Set(role.as_str().to_owned());
        active.update(&txn).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Lifts the tombstone of people deleted while signing in with the IdP
    /// whose email (when deleted) or subject is `who`, so their next JWT
    /// creates them again (the CLI's `user readmit`). Returns how many.
    pub(in crate::store) async fn readmit(&self, who: &str) -> ApiResult<Vec<(String, String, String)>> {
        let who = who.trim();
        let email = Email::parse(who).map(|e| e.0).unwrap_or_else(|_| who.to_owned());
        let txn = self.db().begin().await?;
        let rows = jwt_tombstone::Entity::find()
            .filter(
                Condition::any()
                    .add(jwt_tombstone::Column::Email.eq(email.as_str()))
                    .add(jwt_tombstone::Column::Subject.eq(who)),
            )
            .all(&txn)
            .await?;
        for row in &rows {
            jwt_tombstone::Entity::delete_by_id((row.issuer.clone(), row.subject.clone())).exec(&txn).await?;
            audit::record(
                &txn,
                Actor::System,
                Action::UserEnabled,
                audit::Entry {
                    detail: Some(format!(
                        "{} readmitted: their next JWT from {} (subject {}) may sign in again",
                        row.email, row.issuer, row.subject
                    )),
                    ..Default::default()
                },
            )
            .await?;
        }
        txn.commit().await?;
        Ok(rows.into_iter().map(|r| (r.email, r.issuer, r.subject)).collect())
    }
}

/// The `token_id` of a person signed in with a JWT (there is no token row).
pub const JWT_TOKEN_ID: &str = "jwt";

/// A token's email claim, checked as every email is (confusables too).
fn jwt_email(raw: &str) -> ApiResult<Email> {
    Email::parse(raw).map_err(|e| {
        let why = match e {
            ApiError::BadInput(why) => why,
            _ => "it is not an email address".into(),
        };
        ApiError::Unauthenticated(format!("the token's email claim was refused: {why}"))
    })
}

fn email_taken() -> ApiError {
    ApiError::Unauthenticated(
        "the token's email belongs to another person in the vault (people are matched by issuer and subject, \
         never by email): an admin must delete or rename that person first"
            .into(),
    )
}

use sea_orm::entity::prelude::*;

/// The last check of a system-wide key (`ANTHROPIC_API_KEY`, …). The key
/// lives in the environment, never here: a fingerprint (SHA-256, hex) says
/// which key the result is about, so a replaced key starts unchecked.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "system_key_checks")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub provider: String,
    pub key_fingerprint: String,
    pub last_checked_at: Option<DateTimeUtc>,
    pub check_result: Option<String>,
    pub check_message: Option<String>,
    /// Set while one instance checks the key.
    pub check_claimed_until: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// What `key_fingerprint` holds for `key`: SHA-256, hex.
pub fn fingerprint(key: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(key.as_bytes()))
}

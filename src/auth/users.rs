//! Accounts and their role profiles, as the rest of the service reads them.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Nullable, Text, Timestamptz, Uuid as SqlUuid};

use crate::domain::names::readable_org_name;
use crate::domain::roles;

/// A role profile: organisation + job role + activity codes (stands in for Spine role selection).
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct RoleProfile {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Nullable<Text>)]
    pub nhs_org_code: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub la_code: Option<String>,
    #[diesel(sql_type = Text)]
    pub organisation_name: String,
    #[diesel(sql_type = Text)]
    pub job_role_code: String,
    #[diesel(sql_type = Text)]
    pub job_role_name: String,
    #[diesel(sql_type = Array<Text>)]
    pub activity_codes: Vec<String>,
}

impl RoleProfile {
    pub fn organisation_code(&self) -> &str {
        self.nhs_org_code.as_deref().or(self.la_code.as_deref()).unwrap_or("")
    }
    pub fn has(&self, activity: &str) -> bool {
        self.activity_codes.iter().any(|a| a == activity)
    }
    pub fn may_trace_patients(&self) -> bool {
        roles::may_trace_patients(&self.activity_codes)
    }
    /// B0264 + B0107 (CP-IS042, CP-IS043, CP-IS054).
    pub fn may_view_alerts(&self) -> bool {
        roles::may_view_alerts(&self.activity_codes)
    }
    /// CP-IS041: unborn plans only for midwife roles.
    pub fn may_see_unborn_plans(&self) -> bool {
        roles::may_see_unborn_plans(&self.job_role_code)
    }
    /// "Clinical Practitioner Access Role, King's College Hospital NHS Foundation Trust".
    pub fn label(&self) -> String {
        format!("{}, {}", self.job_role_name, self.organisation_label())
    }
    pub fn organisation_label(&self) -> String {
        if self.la_code.is_some() {
            self.organisation_name.clone()
        } else {
            readable_org_name(&self.organisation_name)
        }
    }
}

/// The account fields every request needs.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct Account {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub username: String,
    #[diesel(sql_type = SqlUuid)]
    pub sds_user_id: uuid::Uuid,
    #[diesel(sql_type = Text)]
    pub display_name: String,
    #[diesel(sql_type = Bool)]
    pub must_change_password: bool,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub disabled_at: Option<DateTime<Utc>>,
}

const PROFILE_COLUMNS: &str = "rp.id, rp.nhs_org_code, rp.la_code, \
     coalesce(o.name, la.display_name, la.reference_name, '') AS organisation_name, \
     rp.job_role_code, jr.name AS job_role_name, \
     ARRAY(SELECT a.activity_code FROM role_profile_activities a WHERE a.role_profile_id = rp.id \
           ORDER BY a.activity_code) AS activity_codes \
     FROM role_profiles rp \
     JOIN job_roles jr ON jr.code = rp.job_role_code \
     LEFT JOIN nhs_organisations o ON o.ods_code = rp.nhs_org_code \
     LEFT JOIN local_authorities la ON la.code = rp.la_code";

pub fn account(conn: &mut PgConnection, user_id: i64) -> QueryResult<Option<Account>> {
    diesel::sql_query(
        "SELECT id, username, sds_user_id, display_name, must_change_password, disabled_at \
         FROM users WHERE id = $1",
    )
    .bind::<BigInt, _>(user_id)
    .get_result(conn)
    .optional()
}

pub fn profiles(conn: &mut PgConnection, user_id: i64) -> QueryResult<Vec<RoleProfile>> {
    diesel::sql_query(format!("SELECT {PROFILE_COLUMNS} WHERE rp.user_id = $1 ORDER BY rp.id"))
        .bind::<BigInt, _>(user_id)
        .load(conn)
}

pub fn profile(conn: &mut PgConnection, user_id: i64, profile_id: i64) -> QueryResult<Option<RoleProfile>> {
    diesel::sql_query(format!("SELECT {PROFILE_COLUMNS} WHERE rp.user_id = $1 AND rp.id = $2"))
        .bind::<BigInt, _>(user_id)
        .bind::<BigInt, _>(profile_id)
        .get_result(conn)
        .optional()
}

//! Account administration for Registration Authority roles (CP-IS059, CP-IS042): each operation is
//! one transaction with its audit entry, recording what changed (before and after).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde_json::json;

use super::password;
use super::session_store::delete_user_sessions;
use crate::audit::{self, Actor, Event};
use crate::error::AppError;
use crate::schema::{
    activity_codes, job_roles, local_authorities, nhs_organisations, role_profile_activities, role_profiles, users,
};
use crate::validation::FieldError;

/// A user as administrators see them.
#[derive(Debug, Clone, Queryable, Selectable, PartialEq)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub struct UserRecord {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub email: Option<String>,
    pub telephone: Option<String>,
    pub must_change_password: bool,
    pub disabled_at: Option<DateTime<Utc>>,
    pub locked_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl UserRecord {
    pub fn status(&self, now: DateTime<Utc>) -> &'static str {
        if self.disabled_at.is_some() {
            "Disabled"
        } else if self.locked_until.is_some_and(|t| t > now) {
            "Locked"
        } else {
            "Active"
        }
    }
}

/// Name and contact details as typed.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct ContactInput {
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub telephone: String,
}

/// Checked contact details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub display_name: String,
    pub email: Option<String>,
    pub telephone: Option<String>,
}

impl Contact {
    pub fn parse(input: &ContactInput) -> Result<Contact, Vec<FieldError>> {
        let mut errors = Vec::new();
        let name = input.display_name.split_whitespace().collect::<Vec<_>>().join(" ");
        if name.is_empty() {
            errors.push(FieldError::new("display_name", "Enter the person's full name"));
        } else if name.chars().count() > 200 {
            errors.push(FieldError::new("display_name", "A name is at most 200 characters"));
        }
        let email = input.email.trim();
        let email_ok = email.is_empty()
            || (email.len() <= 254
                && email.split_once('@').is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.starts_with('.'))
                && !email.chars().any(char::is_whitespace)
                && email.matches('@').count() == 1);
        if !email_ok {
            errors.push(FieldError::new("email", "Enter an email address like name@nhs.net"));
        }
        let phone = input.telephone.trim();
        let phone_ok = phone.is_empty()
            || (phone.len() <= 40
                && phone.chars().filter(char::is_ascii_digit).count() >= 6
                && phone.chars().all(|c| c.is_ascii_digit() || " +()-".contains(c)));
        if !phone_ok {
            errors.push(FieldError::new("telephone", "Enter a telephone number, like 020 7946 0101"));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Contact {
            display_name: name,
            email: Some(email.to_owned()).filter(|e| !e.is_empty()),
            telephone: Some(phone.to_owned()).filter(|t| !t.is_empty()),
        })
    }
}

pub fn check_username(username: &str) -> Result<String, FieldError> {
    let u = username.trim().to_lowercase();
    let ok = (3..=64).contains(&u.len())
        && u.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ".-_".contains(c))
        && u.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(u)
    } else {
        Err(FieldError::new(
            "username",
            "A username is 3 to 64 lower-case letters, digits, dots, hyphens or underscores, like amy.patel",
        ))
    }
}

/// A one-time password for a new account or a reset: 20 characters from an alphabet without
/// look-alikes (about 100 bits).
pub fn temporary_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut bytes = [0u8; 20];
    getrandom::getrandom(&mut bytes).expect("the operating system's random number generator");
    let chars: String = bytes.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect();
    format!("{}-{}-{}-{}", &chars[0..5], &chars[5..10], &chars[10..15], &chars[15..20])
}

pub fn search(conn: &mut PgConnection, text: &str, limit: i64) -> QueryResult<Vec<UserRecord>> {
    let mut q = users::table.select(UserRecord::as_select()).order(users::username).limit(limit).into_boxed();
    let text = text.trim();
    if !text.is_empty() {
        let pattern = format!("%{}%", text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
        q = q.filter(
            users::username
                .ilike(pattern.clone())
                .or(users::display_name.ilike(pattern.clone()))
                .or(users::email.ilike(pattern)),
        );
    }
    q.load(conn)
}

pub fn find(conn: &mut PgConnection, id: i64) -> Result<UserRecord, AppError> {
    users::table
        .find(id)
        .select(UserRecord::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| AppError::NotFound("There is no user with that id.".into()))
}

fn contact_json(u: &UserRecord) -> serde_json::Value {
    json!({"display_name": u.display_name, "email": u.email, "telephone": u.telephone})
}

/// Creates an account that must choose a new password at first sign-in. Returns its id.
pub fn create(
    conn: &mut PgConnection,
    admin: i64,
    username: &str,
    contact: &Contact,
    temporary: &str,
) -> Result<i64, AppError> {
    let hash = password::hash(temporary);
    conn.transaction(|conn| {
        let taken: bool =
            diesel::select(diesel::dsl::exists(users::table.filter(users::username.eq(username)))).get_result(conn)?;
        if taken {
            return Err(AppError::Conflict(format!("The username {username} is taken: choose another.")));
        }
        let id: i64 = diesel::insert_into(users::table)
            .values((
                users::username.eq(username),
                users::display_name.eq(&contact.display_name),
                users::email.eq(&contact.email),
                users::telephone.eq(&contact.telephone),
                users::password_hash.eq(&hash),
                users::must_change_password.eq(true),
            ))
            .returning(users::id)
            .get_result(conn)?;
        audit::record(
            conn,
            Event::new(Actor::User(admin), "user.created").details(json!({
                "user_id": id, "username": username,
                "after": {"display_name": contact.display_name, "email": contact.email, "telephone": contact.telephone}
            })),
        )?;
        Ok(id)
    })
}

pub fn update_contact(conn: &mut PgConnection, admin: i64, id: i64, contact: &Contact) -> Result<(), AppError> {
    conn.transaction(|conn| {
        let before = find(conn, id)?;
        diesel::update(users::table.find(id))
            .set((
                users::display_name.eq(&contact.display_name),
                users::email.eq(&contact.email),
                users::telephone.eq(&contact.telephone),
            ))
            .execute(conn)?;
        let after = find(conn, id)?;
        audit::record(
            conn,
            Event::new(Actor::User(admin), "user.contact_changed")
                .details(json!({"user_id": id, "before": contact_json(&before), "after": contact_json(&after)})),
        )
    })
}

/// Sets a one-time password, ends the user's sessions and makes them choose a new one at sign-in.
pub fn reset_password(conn: &mut PgConnection, admin: i64, id: i64, temporary: &str) -> Result<(), AppError> {
    let hash = password::hash(temporary);
    conn.transaction(|conn| {
        find(conn, id)?;
        diesel::update(users::table.find(id))
            .set((
                users::password_hash.eq(&hash),
                users::must_change_password.eq(true),
                users::failed_sign_ins.eq(0),
                users::locked_until.eq(None::<DateTime<Utc>>),
            ))
            .execute(conn)?;
        let ended = delete_user_sessions(conn, id)?;
        audit::record(
            conn,
            Event::new(Actor::User(admin), "user.password_reset")
                .details(json!({"user_id": id, "sessions_ended": ended})),
        )
    })
}

/// CP-IS059: disabling takes effect at once. In one transaction the account is disabled, every
/// session of the user is deleted and the change is audited.
pub fn disable(conn: &mut PgConnection, admin: i64, id: i64, now: DateTime<Utc>) -> Result<(), AppError> {
    if admin == id {
        return Err(AppError::Conflict("You cannot disable your own account: ask another administrator.".into()));
    }
    conn.transaction(|conn| {
        let before = find(conn, id)?;
        if before.disabled_at.is_some() {
            return Ok(());
        }
        diesel::update(users::table.find(id)).set(users::disabled_at.eq(Some(now))).execute(conn)?;
        let ended = delete_user_sessions(conn, id)?;
        audit::record(
            conn,
            Event::new(Actor::User(admin), "user.disabled").details(json!({
                "user_id": id, "sessions_ended": ended, "before": {"disabled": false}, "after": {"disabled": true}
            })),
        )
    })
}

pub fn enable(conn: &mut PgConnection, admin: i64, id: i64) -> Result<(), AppError> {
    conn.transaction(|conn| {
        let before = find(conn, id)?;
        if before.disabled_at.is_none() {
            return Ok(());
        }
        diesel::update(users::table.find(id))
            .set((
                users::disabled_at.eq(None::<DateTime<Utc>>),
                users::failed_sign_ins.eq(0),
                users::locked_until.eq(None::<DateTime<Utc>>),
            ))
            .execute(conn)?;
        audit::record(
            conn,
            Event::new(Actor::User(admin), "user.enabled")
                .details(json!({"user_id": id, "before": {"disabled": true}, "after": {"disabled": false}})),
        )
    })
}

/// A role profile as typed: organisation code (NHS ODS or LA), job role, activity codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileInput {
    pub organisation: String,
    pub job_role: String,
    pub activities: Vec<String>,
}

pub fn add_profile(
    conn: &mut PgConnection,
    admin: i64,
    user_id: i64,
    input: &ProfileInput,
) -> Result<i64, Vec<FieldError>> {
    let org = input.organisation.trim().to_uppercase();
    let db_err = |e: diesel::result::Error| {
        vec![FieldError::new("organisation", format!("The profile could not be saved: {}", AppError::from(e)))]
    };
    let is_nhs: bool =
        diesel::select(diesel::dsl::exists(nhs_organisations::table.find(&org))).get_result(conn).map_err(db_err)?;
    let is_la: bool =
        diesel::select(diesel::dsl::exists(local_authorities::table.find(&org))).get_result(conn).map_err(db_err)?;
    let role_ok: bool =
        diesel::select(diesel::dsl::exists(job_roles::table.find(&input.job_role))).get_result(conn).map_err(db_err)?;
    let known: Vec<String> = activity_codes::table
        .filter(activity_codes::code.eq_any(&input.activities))
        .select(activity_codes::code)
        .load(conn)
        .map_err(db_err)?;
    let mut errors = Vec::new();
    if !is_nhs && !is_la {
        errors.push(FieldError::new(
            "organisation",
            "Enter the ODS code of an NHS organisation or the code of a local authority, like RJZ or E10000016",
        ));
    }
    if !role_ok {
        errors.push(FieldError::new("job_role", "Choose a job role from the list"));
    }
    if input.activities.is_empty() {
        errors.push(FieldError::new("activities", "Choose at least one activity code"));
    } else if known.len() != input.activities.len() {
        errors.push(FieldError::new("activities", "Choose activity codes from the list"));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    conn.transaction(|conn| {
        let exists: bool = diesel::select(diesel::dsl::exists(
            role_profiles::table
                .filter(role_profiles::user_id.eq(user_id))
                .filter(role_profiles::job_role_code.eq(&input.job_role))
                .filter(role_profiles::nhs_org_code.eq(&org).or(role_profiles::la_code.eq(&org))),
        ))
        .get_result(conn)?;
        if exists {
            return Err(AppError::Conflict("This user already has that job role at that organisation.".into()));
        }
        let id: i64 = diesel::insert_into(role_profiles::table)
            .values((
                role_profiles::user_id.eq(user_id),
                role_profiles::nhs_org_code.eq(is_nhs.then_some(&org)),
                role_profiles::la_code.eq(is_la.then_some(&org)),
                role_profiles::job_role_code.eq(&input.job_role),
            ))
            .returning(role_profiles::id)
            .get_result(conn)?;
        for a in &input.activities {
            diesel::insert_into(role_profile_activities::table)
                .values((role_profile_activities::role_profile_id.eq(id), role_profile_activities::activity_code.eq(a)))
                .execute(conn)?;
        }
        audit::record(
            conn,
            Event::new(Actor::User(admin), "user.role_profile_added").details(json!({
                "user_id": user_id, "role_profile_id": id,
                "after": {"organisation": org, "job_role": input.job_role, "activity_codes": input.activities}
            })),
        )?;
        Ok(id)
    })
    .map_err(|e: AppError| vec![FieldError::new("organisation", e.to_string())])
}

pub fn remove_profile(conn: &mut PgConnection, admin: i64, user_id: i64, profile_id: i64) -> Result<(), AppError> {
    conn.transaction(|conn| {
        let before = super::users::profile(conn, user_id, profile_id)?
            .ok_or_else(|| AppError::NotFound("That role profile does not belong to this user.".into()))?;
        diesel::delete(role_profiles::table.find(profile_id)).execute(conn)?;
        audit::record(
            conn,
            Event::new(Actor::User(admin), "user.role_profile_removed").details(json!({
                "user_id": user_id, "role_profile_id": profile_id,
                "before": {"organisation": before.organisation_code(), "job_role": before.job_role_code,
                           "activity_codes": before.activity_codes}
            })),
        )
    })
}

/// A user changing their own password (after a reset, or by choice).
pub fn change_own_password(
    conn: &mut PgConnection,
    user_id: i64,
    current: &str,
    new: &str,
) -> Result<(), Vec<FieldError>> {
    let hash: String = users::table
        .find(user_id)
        .select(users::password_hash)
        .first(conn)
        .map_err(|e| vec![FieldError::new("current_password", AppError::from(e).to_string())])?;
    if !password::verify(&hash, current) {
        return Err(vec![FieldError::new("current_password", "Your current password is not right")]);
    }
    if let Err(msg) = password::check_new_password(new) {
        return Err(vec![FieldError::new("new_password", msg)]);
    }
    if current == new {
        return Err(vec![FieldError::new("new_password", "Choose a password different from the current one")]);
    }
    let new_hash = password::hash(new);
    conn.transaction(|conn| {
        diesel::update(users::table.find(user_id))
            .set((users::password_hash.eq(&new_hash), users::must_change_password.eq(false)))
            .execute(conn)?;
        audit::record(conn, Event::new(Actor::User(user_id), "auth.password_changed"))
    })
    .map_err(|e: AppError| vec![FieldError::new("new_password", e.to_string())])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_details_are_checked() {
        let ok = Contact::parse(&ContactInput {
            display_name: "  Dr  Amy   Patel ".into(),
            email: "amy.patel@nhs.net".into(),
            telephone: "020 7946 0101".into(),
        })
        .unwrap();
        assert_eq!(ok.display_name, "Dr Amy Patel");
        let bad = Contact::parse(&ContactInput {
            display_name: "".into(),
            email: "not-an-email".into(),
            telephone: "call me".into(),
        })
        .unwrap_err();
        let fields: Vec<&str> = bad.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["display_name", "email", "telephone"]);
        let empty = Contact::parse(&ContactInput { display_name: "A".into(), ..Default::default() }).unwrap();
        assert_eq!((empty.email, empty.telephone), (None, None));
    }

    #[test]
    fn usernames_are_lower_case_and_plain() {
        assert_eq!(check_username(" Amy.Patel ").unwrap(), "amy.patel");
        assert!(check_username("ab").is_err());
        assert!(check_username("amy patel").is_err());
        assert!(check_username(".amy").is_err());
    }

    #[test]
    fn temporary_passwords_pass_the_password_rules() {
        let p = temporary_password();
        assert_eq!(p.len(), 23);
        assert!(password::check_new_password(&p).is_ok());
        assert_ne!(p, temporary_password());
    }
}

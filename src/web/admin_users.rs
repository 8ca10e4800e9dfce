//! User administration for Registration Authority roles (CP-IS059): list and search users, create,
//! edit contact details, add and remove role profiles, reset a password, disable and re-enable.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;
use chrono::Utc;
use diesel::prelude::*;
use serde::Deserialize;

use super::layout::Layout;
use super::{render, render_status, see_other};
use crate::app::AppState;
use crate::auth::admin::{self, Contact, ContactInput, ProfileInput, UserRecord};
use crate::auth::csrf::{CsrfForm, HasCsrfToken};
use crate::auth::users::{self, RoleProfile};
use crate::auth::{Permission, Principal, SignedIn};
use crate::csrf_form;
use crate::db;
use crate::domain::dates::format_uk_datetime;
use crate::error::AppError;
use crate::schema::{activity_codes, job_roles};
use crate::validation::{message_for, FieldError};

const LIST_LIMIT: i64 = 200;

fn admin_id(p: &Principal) -> Result<i64, AppError> {
    p.require(Permission::UserAdmin)?;
    Ok(p.account.id)
}

pub struct UserRow {
    pub href: String,
    pub username: String,
    pub name: String,
    pub email: String,
    pub status: String,
}

#[derive(Template)]
#[template(path = "admin/users.html")]
struct UsersPage {
    layout: Layout,
    q: String,
    no_error: Option<String>,
    rows: Vec<UserRow>,
    truncated: bool,
}

#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
}

pub async fn list_users(
    state: web::Data<AppState>,
    session: Session,
    SignedIn(principal): SignedIn,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, AppError> {
    admin_id(&principal)?;
    let q: String = query.q.chars().take(100).collect();
    let text = q.clone();
    let found = db::run(&state.pool, move |conn| Ok(admin::search(conn, &text, LIST_LIMIT + 1)?)).await?;
    let now = Utc::now();
    let truncated = found.len() as i64 > LIST_LIMIT;
    let rows = found
        .iter()
        .take(LIST_LIMIT as usize)
        .map(|u| UserRow {
            href: format!("/admin/users/{}", u.id),
            username: u.username.clone(),
            name: u.display_name.clone(),
            email: u.email.clone().unwrap_or_default(),
            status: u.status(now).into(),
        })
        .collect();
    render(&UsersPage { layout: Layout::new("Users", Some(&principal), &session), q, no_error: None, rows, truncated })
}

#[derive(Template)]
#[template(path = "admin/user_form.html")]
struct UserFormPage {
    layout: Layout,
    action: String,
    heading: String,
    creating: bool,
    errors: Vec<FieldError>,
    username: String,
    contact: ContactInput,
}

impl UserFormPage {
    fn error(&self, field: &str) -> Option<String> {
        message_for(&self.errors, field)
    }

    /// The create form, empty or as submitted with its errors.
    fn create(
        principal: &Principal,
        session: &Session,
        errors: Vec<FieldError>,
        username: String,
        contact: ContactInput,
    ) -> Self {
        let title = if errors.is_empty() { "Create a user" } else { "Error: Create a user" };
        UserFormPage {
            layout: Layout::new(title, Some(principal), session),
            action: "/admin/users".into(),
            heading: "Create a user".into(),
            creating: true,
            errors,
            username,
            contact,
        }
    }

    /// The edit form for a user, with their details or as submitted with its errors.
    fn edit(
        principal: &Principal,
        session: &Session,
        user: &UserRecord,
        errors: Vec<FieldError>,
        contact: ContactInput,
    ) -> Self {
        let title = if errors.is_empty() {
            "Change name and contact details"
        } else {
            "Error: Change name and contact details"
        };
        UserFormPage {
            layout: Layout::new(title, Some(principal), session),
            action: format!("/admin/users/{}/edit", user.id),
            heading: format!("Change the details of {}", user.username),
            creating: false,
            errors,
            username: user.username.clone(),
            contact,
        }
    }
}

pub async fn new_user_form(session: Session, SignedIn(principal): SignedIn) -> Result<HttpResponse, AppError> {
    admin_id(&principal)?;
    render(&UserFormPage::create(&principal, &session, vec![], String::new(), ContactInput::default()))
}

#[derive(Deserialize)]
pub struct UserForm {
    #[serde(default)]
    username: String,
    #[serde(flatten)]
    contact: ContactInput,
    csrf_token: String,
}
csrf_form!(UserForm);

#[derive(Template)]
#[template(path = "admin/temporary_password.html")]
struct TemporaryPasswordPage {
    layout: Layout,
    heading: String,
    username: String,
    password: String,
    user_href: String,
}

pub async fn create_user(
    state: web::Data<AppState>,
    session: Session,
    SignedIn(principal): SignedIn,
    CsrfForm(form): CsrfForm<UserForm>,
) -> Result<HttpResponse, AppError> {
    let admin = admin_id(&principal)?;
    let mut errors = Vec::new();
    let username = admin::check_username(&form.username).map_err(|e| errors.push(e)).ok();
    let contact = Contact::parse(&form.contact).map_err(|e| errors.extend(e)).ok();
    if let (Some(username), Some(contact), true) = (username.clone(), contact, errors.is_empty()) {
        let temporary = admin::temporary_password();
        let (t, u) = (temporary.clone(), username.clone());
        match db::run(&state.pool, move |conn| admin::create(conn, admin, &u, &contact, &t)).await {
            Ok(id) => {
                return render(&TemporaryPasswordPage {
                    layout: Layout::new("User created", Some(&principal), &session),
                    heading: "User created".into(),
                    username,
                    password: temporary,
                    user_href: format!("/admin/users/{id}"),
                })
            }
            Err(AppError::Conflict(msg)) => errors.push(FieldError::new("username", msg)),
            Err(e) => return Err(e),
        }
    }
    render_status(
        StatusCode::BAD_REQUEST,
        &UserFormPage::create(&principal, &session, errors, form.username, form.contact),
    )
}

pub struct ProfileRow {
    pub label: String,
    pub activities: String,
    pub remove_action: String,
}

#[derive(Template)]
#[template(path = "admin/user.html")]
struct UserPage {
    layout: Layout,
    user: UserRecord,
    base: String,
    status: String,
    created: String,
    profiles: Vec<ProfileRow>,
    job_roles: Vec<(String, String)>,
    activities: Vec<(String, String)>,
    errors: Vec<FieldError>,
    organisation: String,
    is_self: bool,
}

impl UserPage {
    fn error(&self, field: &str) -> Option<String> {
        message_for(&self.errors, field)
    }
}

type Choices = (Vec<(String, String)>, Vec<(String, String)>);

fn choices(conn: &mut PgConnection) -> QueryResult<Choices> {
    let roles: Vec<(String, String)> =
        job_roles::table.select((job_roles::code, job_roles::name)).order(job_roles::code).load(conn)?;
    let acts: Vec<(String, String)> = activity_codes::table
        .select((activity_codes::code, activity_codes::name))
        .order(activity_codes::code)
        .load(conn)?;
    Ok((
        std::iter::once((String::new(), "Choose a job role".to_owned()))
            .chain(roles.into_iter().map(|(c, n)| (c.clone(), format!("{c} {n}"))))
            .collect(),
        acts.into_iter().map(|(c, n)| (c.clone(), format!("{c} {n}"))).collect(),
    ))
}

async fn user_page(
    state: &AppState,
    session: &Session,
    principal: &Principal,
    id: i64,
    errors: Vec<FieldError>,
    organisation: String,
) -> Result<UserPage, AppError> {
    let (user, profiles, (job_roles, activities)) = db::run(&state.pool, move |conn| {
        let user = admin::find(conn, id)?;
        let profiles = users::profiles(conn, id)?;
        Ok((user, profiles, choices(conn)?))
    })
    .await?;
    let base = format!("/admin/users/{id}");
    let profile_row = |p: &RoleProfile| ProfileRow {
        label: p.label(),
        activities: p.activity_codes.join(", "),
        remove_action: format!("{base}/roles/{}/remove", p.id),
    };
    let title = if errors.is_empty() { user.display_name.clone() } else { format!("Error: {}", user.display_name) };
    Ok(UserPage {
        layout: Layout::new(&title, Some(principal), session),
        status: user.status(Utc::now()).into(),
        created: format_uk_datetime(user.created_at),
        profiles: profiles.iter().map(profile_row).collect(),
        is_self: user.id == principal.account.id,
        user,
        base,
        job_roles,
        activities,
        errors,
        organisation,
    })
}

pub async fn show_user(
    state: web::Data<AppState>,
    session: Session,
    SignedIn(principal): SignedIn,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    admin_id(&principal)?;
    render(&user_page(&state, &session, &principal, path.into_inner(), vec![], String::new()).await?)
}

pub async fn edit_user_form(
    state: web::Data<AppState>,
    session: Session,
    SignedIn(principal): SignedIn,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    admin_id(&principal)?;
    let id = path.into_inner();
    let user = db::run(&state.pool, move |conn| admin::find(conn, id)).await?;
    let contact = ContactInput {
        display_name: user.display_name.clone(),
        email: user.email.clone().unwrap_or_default(),
        telephone: user.telephone.clone().unwrap_or_default(),
    };
    render(&UserFormPage::edit(&principal, &session, &user, vec![], contact))
}

#[derive(Deserialize)]
pub struct ContactForm {
    #[serde(flatten)]
    contact: ContactInput,
    csrf_token: String,
}
csrf_form!(ContactForm);

pub async fn update_user(
    state: web::Data<AppState>,
    session: Session,
    SignedIn(principal): SignedIn,
    path: web::Path<i64>,
    CsrfForm(form): CsrfForm<ContactForm>,
) -> Result<HttpResponse, AppError> {
    let admin = admin_id(&principal)?;
    let id = path.into_inner();
    match Contact::parse(&form.contact) {
        Ok(contact) => {
            state.change_account(id, move |conn| admin::update_contact(conn, admin, id, &contact)).await?;
            Ok(see_other(&format!("/admin/users/{id}")))
        }
        Err(errors) => {
            let user = db::run(&state.pool, move |conn| admin::find(conn, id)).await?;
            render_status(
                StatusCode::BAD_REQUEST,
                &UserFormPage::edit(&principal, &session, &user, errors, form.contact),
            )
        }
    }
}

/// The add-profile form: activity codes arrive as repeated `activity` fields.
#[derive(Deserialize)]
#[serde(transparent)]
pub struct PairsForm(Vec<(String, String)>);

impl PairsForm {
    fn get(&self, key: &str) -> String {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap_or_default()
    }
    fn all(&self, key: &str) -> Vec<String> {
        self.0.iter().filter(|(k, _)| k == key).map(|(_, v)| v.clone()).collect()
    }
}

impl HasCsrfToken for PairsForm {
    fn csrf_token(&self) -> &str {
        self.0.iter().find(|(k, _)| k == "csrf_token").map(|(_, v)| v.as_str()).unwrap_or("")
    }
}

pub async fn add_role_profile(
    state: web::Data<AppState>,
    session: Session,
    SignedIn(principal): SignedIn,
    path: web::Path<i64>,
    CsrfForm(form): CsrfForm<PairsForm>,
) -> Result<HttpResponse, AppError> {
    let admin = admin_id(&principal)?;
    let id = path.into_inner();
    let mut activities = form.all("activity");
    activities.sort();
    activities.dedup();
    let input = ProfileInput { organisation: form.get("organisation"), job_role: form.get("job_role"), activities };
    let organisation = input.organisation.clone();
    let result = state
        .change_account(id, move |conn| {
            admin::find(conn, id)?;
            Ok(admin::add_profile(conn, admin, id, &input))
        })
        .await?;
    match result {
        Ok(_) => Ok(see_other(&format!("/admin/users/{id}"))),
        Err(errors) => render_status(
            StatusCode::BAD_REQUEST,
            &user_page(&state, &session, &principal, id, errors, organisation).await?,
        ),
    }
}

pub async fn remove_role_profile(
    state: web::Data<AppState>,
    SignedIn(principal): SignedIn,
    path: web::Path<(i64, i64)>,
    CsrfForm(_): CsrfForm<crate::auth::csrf::ButtonForm>,
) -> Result<HttpResponse, AppError> {
    let admin = admin_id(&principal)?;
    let (id, profile_id) = path.into_inner();
    state.change_account(id, move |conn| admin::remove_profile(conn, admin, id, profile_id)).await?;
    Ok(see_other(&format!("/admin/users/{id}")))
}

pub async fn reset_password(
    state: web::Data<AppState>,
    session: Session,
    SignedIn(principal): SignedIn,
    path: web::Path<i64>,
    CsrfForm(_): CsrfForm<crate::auth::csrf::ButtonForm>,
) -> Result<HttpResponse, AppError> {
    let admin = admin_id(&principal)?;
    let id = path.into_inner();
    let temporary = admin::temporary_password();
    let t = temporary.clone();
    let user = state
        .change_account(id, move |conn| {
            admin::reset_password(conn, admin, id, &t)?;
            admin::find(conn, id)
        })
        .await?;
    render(&TemporaryPasswordPage {
        layout: Layout::new("Password reset", Some(&principal), &session),
        heading: "Password reset".into(),
        username: user.username,
        password: temporary,
        user_href: format!("/admin/users/{id}"),
    })
}

pub async fn disable_user(
    state: web::Data<AppState>,
    SignedIn(principal): SignedIn,
    path: web::Path<i64>,
    CsrfForm(_): CsrfForm<crate::auth::csrf::ButtonForm>,
) -> Result<HttpResponse, AppError> {
    let admin = admin_id(&principal)?;
    let id = path.into_inner();
    state.change_account(id, move |conn| admin::disable(conn, admin, id, Utc::now())).await?;
    Ok(see_other(&format!("/admin/users/{id}")))
}

pub async fn enable_user(
    state: web::Data<AppState>,
    SignedIn(principal): SignedIn,
    path: web::Path<i64>,
    CsrfForm(_): CsrfForm<crate::auth::csrf::ButtonForm>,
) -> Result<HttpResponse, AppError> {
    let admin = admin_id(&principal)?;
    let id = path.into_inner();
    state.change_account(id, move |conn| admin::enable(conn, admin, id)).await?;
    Ok(see_other(&format!("/admin/users/{id}")))
}

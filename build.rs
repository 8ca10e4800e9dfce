//! Rebuilds the crate when a migration is added or changed: `db::MIGRATIONS` embeds the
//! `migrations` directory at compile time, and cargo does not otherwise notice a new directory
//! in it (diesel_migrations' documentation asks for this line).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}

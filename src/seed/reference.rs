//! Reference data compiled into the binary (data/reference/, with its sources and licences in
//! data/reference/README.md): England's 152 upper-tier local authorities, NHS trusts, SDS job
//! roles and activity codes. Loading it twice changes nothing.

use diesel::prelude::*;

use crate::domain::roles::{ACTIVITY_CODES, JOB_ROLES};
use crate::schema::{activity_codes, job_roles, local_authorities, nhs_organisations};

const LOCAL_AUTHORITIES_CSV: &str = include_str!("../../data/reference/local-authorities.csv");
const NHS_TRUSTS_CSV: &str = include_str!("../../data/reference/nhs-trusts.csv");

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Loaded {
    pub local_authorities: usize,
    pub nhs_organisations: usize,
    pub job_roles: usize,
    pub activity_codes: usize,
}

impl std::fmt::Display for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} local authorities, {} NHS organisations, {} job roles, {} activity codes added",
            self.local_authorities, self.nhs_organisations, self.job_roles, self.activity_codes
        )
    }
}

fn rows(csv_text: &str, columns: usize) -> anyhow::Result<Vec<Vec<String>>> {
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record?;
        anyhow::ensure!(record.len() == columns, "reference row with {} columns", record.len());
        out.push(record.iter().map(str::to_owned).collect());
    }
    Ok(out)
}

/// Inserts what is missing; existing rows (and LA contact details sent since) are left alone.
pub fn load(conn: &mut PgConnection) -> anyhow::Result<Loaded> {
    let las = rows(LOCAL_AUTHORITIES_CSV, 2)?;
    let trusts = rows(NHS_TRUSTS_CSV, 4)?;
    conn.transaction(|conn| {
        let mut loaded = Loaded::default();
        for r in &las {
            loaded.local_authorities += diesel::insert_into(local_authorities::table)
                .values((local_authorities::code.eq(&r[0]), local_authorities::reference_name.eq(&r[1])))
                .on_conflict_do_nothing()
                .execute(conn)?;
        }
        for r in &trusts {
            loaded.nhs_organisations += diesel::insert_into(nhs_organisations::table)
                .values((
                    nhs_organisations::ods_code.eq(&r[0]),
                    nhs_organisations::name.eq(&r[1]),
                    nhs_organisations::town.eq(&r[2]),
                    nhs_organisations::postcode.eq(&r[3]),
                ))
                .on_conflict_do_nothing()
                .execute(conn)?;
        }
        for (code, name) in JOB_ROLES {
            loaded.job_roles += diesel::insert_into(job_roles::table)
                .values((job_roles::code.eq(code), job_roles::name.eq(name)))
                .on_conflict_do_nothing()
                .execute(conn)?;
        }
        for (code, name) in ACTIVITY_CODES {
            loaded.activity_codes += diesel::insert_into(activity_codes::table)
                .values((activity_codes::code.eq(code), activity_codes::name.eq(name)))
                .on_conflict_do_nothing()
                .execute(conn)?;
        }
        Ok::<_, anyhow::Error>(loaded)
    })
}

//! The response codes of message 02 (messages.md, "Record checks" and "File checks").

/// File-level outcome of a message 01 upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum FileCode {
    /// Accepted: every record succeeded.
    Cpf01,
    /// Accepted in part: some records were rejected.
    Cpf02,
    /// Rejected: not well-formed XML (or a DTD), wrong namespace or root, a missing or malformed
    /// `messageId`, `sequence` or `Sender` attribute, or no `Record`.
    Cpf03,
    /// Rejected: the sender is not the mailbox's LA, or the LA's sending is switched off (CP-SC014).
    Cpf04,
    /// Rejected: `sequence` not greater than the last accepted one from this LA (CP-SC016).
    Cpf05,
    /// Rejected: every record was rejected.
    Cpf06,
}

impl FileCode {
    pub const ALL: [FileCode; 6] =
        [FileCode::Cpf01, FileCode::Cpf02, FileCode::Cpf03, FileCode::Cpf04, FileCode::Cpf05, FileCode::Cpf06];

    pub fn code(self) -> &'static str {
        match self {
            FileCode::Cpf01 => "CPF01",
            FileCode::Cpf02 => "CPF02",
            FileCode::Cpf03 => "CPF03",
            FileCode::Cpf04 => "CPF04",
            FileCode::Cpf05 => "CPF05",
            FileCode::Cpf06 => "CPF06",
        }
    }

    pub fn from_code(s: &str) -> Option<FileCode> {
        FileCode::ALL.into_iter().find(|c| c.code() == s)
    }

    /// The meaning, for people reading an acknowledgement.
    pub fn meaning(self) -> &'static str {
        match self {
            FileCode::Cpf01 => "Accepted: every record succeeded",
            FileCode::Cpf02 => "Accepted in part: some records were rejected",
            FileCode::Cpf03 => "Rejected: the file is not a well-formed CP-IS upload; nothing was stored",
            FileCode::Cpf04 => "Rejected: the sender is not this mailbox's local authority, or its sending is switched off; nothing was stored",
            FileCode::Cpf05 => "Rejected: the sequence number is not greater than the last accepted one; nothing was stored",
            FileCode::Cpf06 => "Rejected: every record was rejected",
        }
    }

    /// Whether the file passed the file checks (its sender details and sequence then count).
    pub fn passed_file_checks(self) -> bool {
        matches!(self, FileCode::Cpf01 | FileCode::Cpf02 | FileCode::Cpf06)
    }
}

/// Record-level outcome, decided by the first check that fails, in the contract's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum RecordCode {
    /// No PDS match (or the patient record is invalidated).
    Cpr01,
    /// Sensitive record (S-flag): CP information cannot be held against it.
    Cpr02,
    /// NHS number not verified (the PDS cross-check of CP-IS002 failed).
    Cpr03,
    /// Not a new-style NHS number (not 10 digits, or the modulus 11 check fails).
    Cpr04,
    /// NHS number superseded: the response carries the new number.
    Cpr05,
    /// Success: the record was stored.
    Cpr06,
    /// Unsuccessful: any other fault (the text says which).
    Cpr07,
}

impl RecordCode {
    pub const ALL: [RecordCode; 7] = [
        RecordCode::Cpr01,
        RecordCode::Cpr02,
        RecordCode::Cpr03,
        RecordCode::Cpr04,
        RecordCode::Cpr05,
        RecordCode::Cpr06,
        RecordCode::Cpr07,
    ];

    pub fn code(self) -> &'static str {
        match self {
            RecordCode::Cpr01 => "CPR01",
            RecordCode::Cpr02 => "CPR02",
            RecordCode::Cpr03 => "CPR03",
            RecordCode::Cpr04 => "CPR04",
            RecordCode::Cpr05 => "CPR05",
            RecordCode::Cpr06 => "CPR06",
            RecordCode::Cpr07 => "CPR07",
        }
    }

    pub fn from_code(s: &str) -> Option<RecordCode> {
        RecordCode::ALL.into_iter().find(|c| c.code() == s)
    }

    /// The contract's short text for the code (CPR07's text names the fault instead).
    pub fn text(self) -> &'static str {
        match self {
            RecordCode::Cpr01 => "No PDS match",
            RecordCode::Cpr02 => "Sensitive record",
            RecordCode::Cpr03 => "NHS number not verified",
            RecordCode::Cpr04 => "Not a new-style NHS number",
            RecordCode::Cpr05 => "NHS number superseded",
            RecordCode::Cpr06 => "Success",
            RecordCode::Cpr07 => "Unsuccessful",
        }
    }

    /// A fuller explanation for the LA portal.
    pub fn explanation(self) -> &'static str {
        match self {
            RecordCode::Cpr01 => "PDS has no patient with this NHS number, or the record is invalidated. Check the number.",
            RecordCode::Cpr02 => "PDS holds this patient as a sensitive (restricted) record, so CP-IS cannot hold information against it.",
            RecordCode::Cpr03 => "The name and date of birth sent do not match PDS closely enough to be sure this is the right child. Check them against PDS.",
            RecordCode::Cpr04 => "The NHS number is not 10 digits or its check digit is wrong.",
            RecordCode::Cpr05 => "PDS has replaced this NHS number with a new one (shown). Send the record again under the new number.",
            RecordCode::Cpr06 => "The record was stored and replaces what this authority held for the child.",
            RecordCode::Cpr07 => "The record has a fault, described in the text. Correct it and send the record again.",
        }
    }

    pub fn accepted(self) -> bool {
        self == RecordCode::Cpr06
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for c in FileCode::ALL {
            assert_eq!(FileCode::from_code(c.code()), Some(c));
        }
        for c in RecordCode::ALL {
            assert_eq!(RecordCode::from_code(c.code()), Some(c));
        }
        assert_eq!(RecordCode::from_code("CPR08"), None);
    }
}

//! Roles, in the order of what they allow.

/// What a caller may do. Each role includes everything of the ones before it, so
/// "may call" is `caller >= required`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads: get, list, render, diff, watch, subscribe, results.
    Reader,
    /// A reader plus what an application does at runtime (assignments, exposures,
    /// metrics).
    App,
    /// An application plus creating and changing what llmops holds.
    Editor,
    /// Everything: keys, deletes, release gates and overrides, protected labels.
    Admin,
}

impl Role {
    /// Every role, least first.
    pub const ALL: [Role; 4] = [Role::Reader, Role::App, Role::Editor, Role::Admin];

    /// The proto enum's name (`ROLE_EDITOR`), as errors and listings show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "ROLE_READER",
            Role::App => "ROLE_APP",
            Role::Editor => "ROLE_EDITOR",
            Role::Admin => "ROLE_ADMIN",
        }
    }

    /// The proto enum's number.
    pub fn number(self) -> i32 {
        match self {
            Role::Reader => 1,
            Role::App => 2,
            Role::Editor => 3,
            Role::Admin => 4,
        }
    }

    /// The role of a proto enum number; `None` for 0 (unset) and unknown numbers.
    pub fn from_number(number: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|role| role.number() == number)
    }

    /// The role named `name`: `ROLE_EDITOR`, or `editor` in any case.
    pub fn parse(name: &str) -> Option<Self> {
        let name = name.trim().to_ascii_uppercase();
        let name = name.strip_prefix("ROLE_").unwrap_or(&name);
        Self::ALL
            .into_iter()
            .find(|role| role.as_str().strip_prefix("ROLE_") == Some(name))
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_round_trip() {
        assert!(Role::Reader < Role::App && Role::App < Role::Editor && Role::Editor < Role::Admin);
        for role in Role::ALL {
            assert_eq!(Role::from_number(role.number()), Some(role));
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("editor"), Some(Role::Editor));
        assert_eq!(Role::from_number(0), None);
        assert_eq!(Role::parse("owner"), None);
    }
}

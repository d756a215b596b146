//! The scopes a grant carries. Unknown scopes are dropped (RFC 6749 §3.3 lets the server narrow them).

use std::fmt;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scopes {
    pub openid: bool,
    pub profile: bool,
    pub email: bool,
    pub groups: bool,
    pub offline_access: bool,
}

impl Scopes {
    pub const SUPPORTED: [&'static str; 5] =
        ["openid", "profile", "email", "groups", "offline_access"];

    pub fn parse(space_separated: &str) -> Scopes {
        let mut s = Scopes::default();
        for word in space_separated.split(' ') {
            match word {
                "openid" => s.openid = true,
                "profile" => s.profile = true,
                "email" => s.email = true,
                "groups" => s.groups = true,
                "offline_access" => s.offline_access = true,
                _ => {}
            }
        }
        s
    }

    /// Narrowing for refresh requests (RFC 6749 §6): only scopes already granted survive.
    pub fn intersect(self, other: Scopes) -> Scopes {
        Scopes {
            openid: self.openid && other.openid,
            profile: self.profile && other.profile,
            email: self.email && other.email,
            groups: self.groups && other.groups,
            offline_access: self.offline_access && other.offline_access,
        }
    }

    pub fn to_bits(self) -> u8 {
        (self.openid as u8)
            | (self.profile as u8) << 1
            | (self.email as u8) << 2
            | (self.groups as u8) << 3
            | (self.offline_access as u8) << 4
    }

    pub fn from_bits(bits: u8) -> Scopes {
        Scopes {
            openid: bits & 1 != 0,
            profile: bits & 2 != 0,
            email: bits & 4 != 0,
            groups: bits & 8 != 0,
            offline_access: bits & 16 != 0,
        }
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let words = [
            (self.openid, "openid"),
            (self.profile, "profile"),
            (self.email, "email"),
            (self.groups, "groups"),
            (self.offline_access, "offline_access"),
        ];
        let mut first = true;
        for (on, word) in words {
            if on {
                if !first {
                    f.write_str(" ")?;
                }
                f.write_str(word)?;
                first = false;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_scopes_are_dropped_and_known_ones_round_trip() {
        let s = Scopes::parse("openid  email weird profile");
        assert_eq!(s.to_string(), "openid profile email");
        assert_eq!(Scopes::from_bits(s.to_bits()), s);
    }
}

use std::time::Duration;

const UNITS: [(char, u64); 4] = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];

/// Parses a human duration: whole numbers with units `d`, `h`, `m`, `s`, largest unit first, each at most
/// once (`"90s"`, `"15m"`, `"1h30m"`, `"7d"`). The error is a sentence for the operator.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let invalid =
        || format!("\"{s}\" is not a duration like \"90s\", \"15m\", \"1h30m\" or \"7d\"");
    if s.is_empty() {
        return Err(invalid());
    }
    let mut rest = s;
    let mut total: u64 = 0;
    // Index into UNITS of the smallest unit still allowed, which keeps "1h30m" unambiguous.
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(invalid());
        }
        let (number, tail) = rest.split_at(digits);
        let Some(unit) = tail.chars().next() else {
            return Err(format!(
                "\"{s}\" lacks a unit after {number} (use d, h, m or s)"
            ));
        };
        let Some(offset) = UNITS[next_unit..].iter().position(|(u, _)| *u == unit) else {
            return Err(invalid());
        };
        let (_, seconds_per_unit) = UNITS[next_unit + offset];
        let too_large = || format!("\"{s}\" is too large");
        let count: u64 = number.parse().map_err(|_| too_large())?;
        total = count
            .checked_mul(seconds_per_unit)
            .and_then(|part| total.checked_add(part))
            .ok_or_else(too_large)?;
        next_unit += offset + 1;
        rest = &tail[unit.len_utf8()..];
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Result<Duration, String> {
        Ok(Duration::from_secs(n))
    }

    #[test]
    fn single_units_are_understood() {
        assert_eq!(parse_duration("90s"), secs(90));
        assert_eq!(parse_duration("15m"), secs(900));
        assert_eq!(parse_duration("1h"), secs(3_600));
        assert_eq!(parse_duration("7d"), secs(604_800));
    }

    #[test]
    fn units_combine_largest_first() {
        assert_eq!(parse_duration("1h30m"), secs(5_400));
        assert_eq!(parse_duration("1d2h3m4s"), secs(93_784));
        assert_eq!(parse_duration("2d30s"), secs(172_830));
    }

    #[test]
    fn zero_is_a_duration() {
        assert_eq!(parse_duration("0s"), secs(0));
    }

    #[test]
    fn units_out_of_order_or_repeated_are_rejected() {
        assert!(parse_duration("30m1h").is_err());
        assert!(parse_duration("1h1h").is_err());
    }

    #[test]
    fn malformed_durations_are_rejected_with_an_example() {
        for bad in [
            "", "10", "h", "1.5h", "1 h", " 1h", "1h ", "-1s", "500ms", "1w", "1H", "1h30",
        ] {
            let error = parse_duration(bad).expect_err(bad);
            assert!(error.contains(&format!("\"{bad}\"")), "{bad}: {error}");
        }
        assert_eq!(
            parse_duration("10").unwrap_err(),
            "\"10\" lacks a unit after 10 (use d, h, m or s)"
        );
        assert_eq!(
            parse_duration("1w").unwrap_err(),
            "\"1w\" is not a duration like \"90s\", \"15m\", \"1h30m\" or \"7d\""
        );
    }

    #[test]
    fn overflowing_durations_are_rejected_not_wrapped() {
        assert_eq!(
            parse_duration("99999999999999999999s").unwrap_err(),
            "\"99999999999999999999s\" is too large"
        );
        assert_eq!(
            parse_duration("999999999999999d").unwrap_err(),
            "\"999999999999999d\" is too large"
        );
    }
}

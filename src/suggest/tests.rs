//! Tests of the public API: the product examples, correct addresses, pattern inference, and
//! properties over arbitrary input.

use super::*;
use proptest::prelude::*;

fn input<'a>(address: &'a str, known_good: &'a KnownDomains) -> SuggestInput<'a> {
    SuggestInput {
        address,
        given_name: None,
        family_name: None,
        known_good_domains: known_good,
        domain_pattern: None,
    }
}

fn top(address: &str) -> Option<Suggestion> {
    suggest(&input(address, &KnownDomains::default()))
        .into_iter()
        .next()
}

/// Asserts the best suggestion for `typed` is `expected`, a typo fix with at least `min`
/// confidence, and returns its confidence.
fn fixes_to(typed: &str, expected: &str, min: f32) -> f32 {
    let s = top(typed).unwrap_or_else(|| panic!("no suggestion for {typed}"));
    assert_eq!(s.address, expected, "{typed}: {s:?}");
    assert_eq!(s.evidence, EvidenceKind::TypoFix);
    assert!(s.confidence >= min, "{typed}: {s:?}");
    assert!(s.confidence <= 1.0);
    s.confidence
}

#[test]
fn typos_of_popular_mailbox_domains_are_fixed() {
    // The service shows import-verdict suggestions from 0.9.
    fixes_to("jane@gmal.com", "jane@gmail.com", 0.9);
    fixes_to("jane@hotmial.com", "jane@hotmail.com", 0.9);
    fixes_to("jane@yaho.com", "jane@yahoo.com", 0.9);
    fixes_to("jane@gamil.com", "jane@gmail.com", 0.9);
    fixes_to("jane@gnail.com", "jane@gmail.com", 0.9);
    fixes_to("jane@hotmai.com", "jane@hotmail.com", 0.9);
    fixes_to("jane@outlok.com", "jane@outlook.com", 0.9);
    fixes_to("jane@gmailcom", "jane@gmail.com", 0.9);
    fixes_to("jane@gmaik.com", "jane@gmail.com", 0.9);
}

#[test]
fn explanation_names_the_slip() {
    let s = top("jane@gmal.com").unwrap();
    assert_eq!(
        s.explanation,
        "domain gmal.com looks like a typo of gmail.com (1 edit: missing 'i'; a popular mailbox provider)"
    );
    let s = top("jane@gnail.com").unwrap();
    assert!(
        s.explanation.contains("'n' for 'm', adjacent keys"),
        "{s:?}"
    );
    let s = top("jane@hotmial.com").unwrap();
    assert!(s.explanation.contains("transposed"), "{s:?}");
}

#[test]
fn typos_in_the_domain_suffix_are_fixed() {
    for typed in [
        "gmail.con",
        "gmail.cmo",
        "gmail.ocm",
        "gmail.co",
        "gmail.vom",
        "gmail.xom",
        "gmail.comm",
        "gmail.cm",
        "gmail.om",
    ] {
        let c = fixes_to(&format!("jane@{typed}"), "jane@gmail.com", 0.95);
        assert!((c - 0.95).abs() < 1e-6, "{typed}: {c}");
    }
    for (typed, meant) in [
        ("comcast.nte", "comcast.net"),
        ("verizon.ent", "verizon.net"),
        ("icloud.co", "icloud.com"),
        ("yahoo.co", "yahoo.com"),
        ("hotmail.co", "hotmail.com"),
        ("hotmail.co.k", "hotmail.co.uk"),
    ] {
        fixes_to(&format!("jane@{typed}"), &format!("jane@{meant}"), 0.95);
    }
    // The tenant's own domain with a .ogr typo.
    let known = ["charity.org"];
    let s = suggest(&input("jane@charity.ogr", &KnownDomains::new(&known)));
    assert_eq!(s[0].address, "jane@charity.org");
    assert!(s[0].confidence >= 0.9);
}

#[test]
fn name_and_suffix_typo_together() {
    // Two independent slips: lower than either alone, still ranked first.
    let c = fixes_to("jane@hotmial.con", "jane@hotmail.com", 0.75);
    assert!(c < 0.9);
}

#[test]
fn two_edits_score_lower_than_one() {
    let one = fixes_to("jane@hotmal.com", "jane@hotmail.com", 0.8);
    let two = fixes_to("jane@hptmial.com", "jane@hotmail.com", 0.5);
    let two_far = fixes_to("jane@hormal.com", "jane@hotmail.com", 0.5);
    assert!(two < one && two_far < one, "{one} {two} {two_far}");
    // Two edits on a short name are too many.
    assert!(top("jane@gnal.com").is_none());
    // Damerau-Levenshtein says 2, but no two slips of the keyboard alignment explain it.
    assert!(top("jane@hotmla.com").is_none());
}

#[test]
fn correct_addresses_get_no_suggestion() {
    for addr in [
        "jane@gmail.com",
        "jane@googlemail.com",
        "jane@yahoo.co.uk",
        "jane@hotmail.fr",
        "jane@me.com",
        "jane@mac.com",
        "jane@gmx.com",
        "jane@mail.com",
        "jane@live.fr",
        "bob@company.com",
        "bob@acme.io",
        "bob@example.org",
        "bob@gm.com",
        "bob@gmail.de",
        "bob@mail.company.com",
        "bob@university.edu",
    ] {
        assert_eq!(
            suggest(&input(addr, &KnownDomains::default())),
            vec![],
            "{addr}"
        );
    }
    // The tenant's own domain is never corrected, even when one edit from a provider.
    let known = ["hotmall.com"];
    assert_eq!(
        suggest(&input("bob@hotmall.com", &KnownDomains::new(&known))),
        vec![]
    );
}

#[test]
fn typo_fix_never_touches_the_local_part() {
    for addr in ["jnae@gmal.com", "a.b+c@hotmial.co.uk", "x@gmail.con"] {
        let (local, _) = addr.rsplit_once('@').unwrap();
        for s in suggest(&input(addr, &KnownDomains::default())) {
            assert!(s.address.starts_with(&format!("{local}@")), "{s:?}");
        }
    }
}

fn seeded_company() -> Vec<(String, String, String)> {
    let given = [
        "Alice", "Bruno", "Chloé", "David", "Emma", "Farid", "Greta", "Hugo", "Ines", "Jonas",
    ];
    let family = ["Martin", "Bernard", "Dubois", "Thomas"];
    let mut people = Vec::new();
    for f in family {
        for g in given {
            let local = format!("{}.{}", pattern::fold_name(g), pattern::fold_name(f));
            people.push((local, g.to_string(), f.to_string()));
        }
    }
    // Two addresses that do not follow first.last.
    people.push(("kim".into(), "Kim".into(), "Lee".into()));
    people.push(("boss".into(), "Robert".into(), "King".into()));
    people
}

fn company_pattern() -> DomainPattern {
    let people = seeded_company();
    let known: Vec<KnownAddress<'_>> = people
        .iter()
        .map(|(l, g, f)| KnownAddress {
            local_part: l,
            given_name: Some(g),
            family_name: Some(f),
        })
        .collect();
    infer_pattern(&known).expect("a clear pattern")
}

#[test]
fn the_pattern_of_a_seeded_domain_is_inferred() {
    let p = company_pattern();
    assert_eq!(p.pattern, LocalPattern::FirstDotLast);
    assert_eq!((p.matching, p.total), (40, 42));
}

#[test]
fn pattern_inference_from_local_parts_alone() {
    // As the service seeds it: 40 delivered first.last addresses, info@ and sales@, no names.
    let people = seeded_company();
    let mut known: Vec<KnownAddress<'_>> = people[..40]
        .iter()
        .map(|(l, _, _)| KnownAddress {
            local_part: l,
            given_name: None,
            family_name: None,
        })
        .collect();
    for role in ["info", "sales"] {
        known.push(KnownAddress {
            local_part: role,
            given_name: None,
            family_name: None,
        });
    }
    let p = infer_pattern(&known).unwrap();
    assert_eq!(
        (p.pattern, p.matching, p.total),
        (LocalPattern::FirstDotLast, 40, 42)
    );
    let s = suggest(&SuggestInput {
        address: "jnae@company.com",
        given_name: Some("Jane"),
        family_name: Some("Smith"),
        known_good_domains: &KnownDomains::new(&["company.com"]),
        domain_pattern: Some(&p),
    });
    assert_eq!(s[0].address, "jane.smith@company.com");
    assert!(s[0].confidence >= 0.9, "{s:?}");
}

#[test]
fn the_company_pattern_turns_a_name_into_a_suggestion() {
    let p = company_pattern();
    let s = suggest(&SuggestInput {
        address: "jnae@company.com",
        given_name: Some("Jane"),
        family_name: Some("Smith"),
        known_good_domains: &KnownDomains::new(&["company.com"]),
        domain_pattern: Some(&p),
    });
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(s[0].address, "jane.smith@company.com");
    assert_eq!(s[0].evidence, EvidenceKind::CompanyPattern);
    assert!(s[0].confidence >= 0.9, "{s:?}");
    assert_eq!(
        s[0].explanation,
        "company.com uses first.last for 40 of 42 known addresses; applied to Jane Smith"
    );
}

#[test]
fn small_samples_give_lower_confidence() {
    let weak = DomainPattern {
        pattern: LocalPattern::FirstDotLast,
        matching: 3,
        total: 4,
    };
    let s = suggest(&SuggestInput {
        address: "jnae@company.com",
        given_name: Some("Jane"),
        family_name: Some("Smith"),
        known_good_domains: &KnownDomains::new(&[]),
        domain_pattern: Some(&weak),
    });
    assert_eq!(s[0].address, "jane.smith@company.com");
    assert!(s[0].confidence < 0.6, "{s:?}");
    assert!(wilson_lower_bound(40, 42) >= 0.9);
    assert!(wilson_lower_bound(3, 4) < 0.6);
    assert!(wilson_lower_bound(4, 4) < wilson_lower_bound(40, 40));
    assert_eq!(wilson_lower_bound(0, 0), 0.0);
}

#[test]
fn pattern_needs_names_and_never_returns_the_input() {
    let p = company_pattern();
    let base = SuggestInput {
        address: "jnae@company.com",
        given_name: None,
        family_name: None,
        known_good_domains: &KnownDomains::new(&[]),
        domain_pattern: Some(&p),
    };
    assert_eq!(suggest(&base), vec![]);
    assert_eq!(
        suggest(&SuggestInput {
            given_name: Some("Jane"),
            ..base
        }),
        vec![]
    );
    // Already the pattern's address.
    assert_eq!(
        suggest(&SuggestInput {
            address: "jane.smith@company.com",
            given_name: Some("Jane"),
            family_name: Some("Smith"),
            ..base
        }),
        vec![]
    );
    // No company pattern at a free-mail provider.
    assert_eq!(
        suggest(&SuggestInput {
            address: "jnae@gmail.com",
            given_name: Some("Jane"),
            family_name: Some("Smith"),
            ..base
        }),
        vec![]
    );
}

#[test]
fn unrelated_local_part_lowers_pattern_confidence() {
    let p = company_pattern();
    let s = suggest(&SuggestInput {
        address: "sales.team@company.com",
        given_name: Some("Jane"),
        family_name: Some("Smith"),
        known_good_domains: &KnownDomains::new(&[]),
        domain_pattern: Some(&p),
    });
    assert_eq!(s[0].address, "jane.smith@company.com");
    assert!(s[0].confidence < 0.8, "{s:?}");
    assert!(s[0].explanation.contains("does not resemble"));
}

#[test]
fn accents_in_names_are_folded_before_the_pattern_is_applied() {
    assert_eq!(
        LocalPattern::FirstDotLast
            .apply("José", "Müller")
            .as_deref(),
        Some("jose.muller")
    );
    assert_eq!(
        LocalPattern::FLast.apply("Ærøskøbing", "Weiß").as_deref(),
        Some("aweiss")
    );
    let p = company_pattern();
    let s = suggest(&SuggestInput {
        address: "jose.mueller@company.com",
        given_name: Some("José"),
        family_name: Some("Müller"),
        known_good_domains: &KnownDomains::new(&[]),
        domain_pattern: Some(&p),
    });
    assert_eq!(s[0].address, "jose.muller@company.com");
}

#[test]
fn ambiguous_evidence_gives_no_pattern() {
    let known = [
        ("jane.smith", "Jane", "Smith"),
        ("bob.jones", "Bob", "Jones"),
        ("ann.lee", "Ann", "Lee"),
        ("cdiaz", "Carla", "Diaz"),
        ("dford", "Dan", "Ford"),
        ("eking", "Eve", "King"),
    ];
    let known: Vec<_> = known
        .iter()
        .map(|(l, g, f)| KnownAddress {
            local_part: l,
            given_name: Some(g),
            family_name: Some(f),
        })
        .collect();
    assert_eq!(infer_pattern(&known), None);
    assert_eq!(infer_pattern(&[]), None);
    // Too little evidence.
    assert_eq!(infer_pattern(&known[..2]), None);
}

#[test]
fn both_kinds_rank_together() {
    // A tenant domain typo and a pattern for the typed domain: both come back, best first.
    let p = DomainPattern {
        pattern: LocalPattern::FirstDotLast,
        matching: 5,
        total: 8,
    };
    let s = suggest(&SuggestInput {
        address: "jnae@acmecrop.com",
        given_name: Some("Jane"),
        family_name: Some("Smith"),
        known_good_domains: &KnownDomains::new(&["acmecorp.com"]),
        domain_pattern: Some(&p),
    });
    assert_eq!(s.len(), 2, "{s:?}");
    assert_eq!(s[0].address, "jnae@acmecorp.com");
    assert_eq!(s[1].address, "jane.smith@acmecrop.com");
    assert!(s[0].confidence >= s[1].confidence);
}

#[test]
fn each_suggested_address_appears_once() {
    // A known-good domain that is also popular, listed twice, in two spellings.
    let known = ["gmail.com", "gmail.com", "GMAIL.COM."];
    let s = suggest(&input("jane@gmal.com", &KnownDomains::new(&known)));
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(s[0].address, "jane@gmail.com");
    assert!(s[0].explanation.contains("popular"));
    // The pattern's address equals the input: dropped, the typo fix stays.
    let p = DomainPattern {
        pattern: LocalPattern::First,
        matching: 3,
        total: 4,
    };
    let s = suggest(&SuggestInput {
        address: "jane@acme.con",
        given_name: Some("Jane"),
        family_name: None,
        known_good_domains: &KnownDomains::new(&["acme.com"]),
        domain_pattern: Some(&p),
    });
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(s[0].evidence, EvidenceKind::TypoFix);
}

#[test]
fn garbage_input_gets_no_suggestion() {
    for addr in [
        "",
        "@",
        "no-at-sign",
        "a@",
        "@gmal.com",
        "a@.",
        "a@b@gmal.com",
    ] {
        let s = suggest(&input(addr, &KnownDomains::default()));
        assert!(s.iter().all(|s| s.address != addr), "{addr}: {s:?}");
    }
    assert_eq!(top("a@b@gmal.com").unwrap().address, "a@b@gmail.com");
    let s = top("a@gmail.com.").unwrap();
    assert_eq!((s.address.as_str(), s.confidence), ("a@gmail.com", 0.95));
    assert_eq!(top("a@gmail..com").unwrap().address, "a@gmail.com");
    assert!(top("a@...").is_none());
    assert!(popular_domains().contains(&"gmail.com"));
    assert!(popular_domains().len() >= 60);
}

fn arb_pattern() -> impl Strategy<Value = DomainPattern> {
    (0usize..12, 0u32..100, 0u32..100).prop_map(|(i, matching, total)| DomainPattern {
        pattern: pattern::ALL[i],
        matching,
        total,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn suggestions_are_deterministic_distinct_ranked_and_keep_the_local_part_of_typo_fixes(
        address in prop_oneof![
            ".*",
            "[a-z.]{1,12}@[a-z0-9.-]{1,16}",
            "[a-z]{1,8}@(gmal|gmial|hotmal|yaho|outlok|gmail|icloud|live|qq)\\.(com|con|co|cm|net|nte|co\\.uk|de|fr)",
        ],
        given in proptest::option::of(".*"),
        family in proptest::option::of(".*"),
        known in proptest::collection::vec(prop_oneof![".*", "[a-z]{1,10}\\.(com|org|co\\.uk)"], 0..4),
        pattern in proptest::option::of(arb_pattern()),
    ) {
        let known: Vec<&str> = known.iter().map(String::as_str).collect();
        let req = SuggestInput {
            address: &address,
            given_name: given.as_deref(),
            family_name: family.as_deref(),
            known_good_domains: &KnownDomains::new(&known),
            domain_pattern: pattern.as_ref(),
        };
        let out = suggest(&req);
        prop_assert_eq!(&out, &suggest(&req), "not deterministic");
        for (i, s) in out.iter().enumerate() {
            prop_assert_ne!(&s.address, &address);
            prop_assert!((0.0..=1.0).contains(&s.confidence), "{:?}", s);
            prop_assert!(!s.explanation.is_empty());
            prop_assert!(!out[..i].iter().any(|o| o.address == s.address), "duplicate {:?}", s);
            if i > 0 {
                prop_assert!(out[i - 1].confidence >= s.confidence, "not ranked");
            }
            if s.evidence == EvidenceKind::TypoFix {
                let (local, _) = address.rsplit_once('@').unwrap();
                let (new_local, _) = s.address.rsplit_once('@').unwrap();
                prop_assert_eq!(local, new_local);
            }
        }
    }

    #[test]
    fn infer_and_apply_never_panic(
        known in proptest::collection::vec(
            (".*", proptest::option::of(".*"), proptest::option::of(".*")),
            0..20,
        ),
        g in ".*",
        f in ".*",
    ) {
        let known: Vec<KnownAddress<'_>> = known
            .iter()
            .map(|(l, g, f)| KnownAddress {
                local_part: l,
                given_name: g.as_deref(),
                family_name: f.as_deref(),
            })
            .collect();
        let a = infer_pattern(&known);
        prop_assert_eq!(&a, &infer_pattern(&known));
        if let Some(p) = a {
            prop_assert!(p.matching >= 3 && p.matching <= p.total);
        }
        for p in pattern::ALL {
            if let Some(l) = p.apply(&g, &f) {
                prop_assert!(!l.is_empty() && l.len() <= 64);
                prop_assert!(l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)), "{}", l);
                prop_assert!(!l.starts_with(['.', '-', '_']) && !l.ends_with(['.', '-', '_']));
            }
        }
    }

    #[test]
    fn a_domain_whose_addresses_all_follow_one_pattern_has_that_pattern_inferred(
        people in proptest::collection::vec(("[A-Z][a-z]{2,8}", "[A-Z][a-z]{2,10}"), 5..30),
        which in 0usize..12,
    ) {
        let p = pattern::ALL[which];
        let locals: Vec<String> = people.iter().map(|(g, f)| p.apply(g, f).unwrap()).collect();
        let known: Vec<KnownAddress<'_>> = people
            .iter()
            .zip(&locals)
            .map(|((g, f), l)| KnownAddress { local_part: l, given_name: Some(g), family_name: Some(f) })
            .collect();
        // Five or more people whose every address follows one pattern: it must be found.
        let found = infer_pattern(&known);
        prop_assert!(found.is_some(), "no pattern inferred from {} addresses of {:?}", known.len(), p);
        let found = found.unwrap();
        // A name can make two patterns agree (given == family); the inferred one must still
        // produce every known address.
        for ((g, f), l) in people.iter().zip(&locals) {
            let got = found.pattern.apply(g, f);
            prop_assert_eq!(got.as_deref(), Some(l.as_str()));
        }
    }
}

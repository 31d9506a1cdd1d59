#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn check(input: &str, expected: &[&str]) {
    assert_eq!(analyze(input), expected, "analyze({input:?})");
}

fn primaries(input: &str) -> Vec<String> {
    analyze_query(input)
        .iter()
        .map(|t| t.primary().to_owned())
        .collect()
}

#[test]
fn prices_in_every_customer_spelling_become_one_token() {
    for text in [
        "Rp25.000",
        "Rp 25.000",
        "rp. 25.000",
        "25rb",
        "25 ribu",
        "25k",
        "25.000",
        "IDR 25,000",
    ] {
        check(text, &["25000"]);
    }
    check("Rp 22.000,00", &["22000"]);
    check("2,5 jt", &["2500000"]);
    check("harga Rp 135.000", &["harga", "135000"]);
}

#[test]
fn clock_times_and_ranges_keep_both_ends() {
    check(
        "Sabtu–Minggu 08.00–23.00 WIB",
        &["sabtu", "minggu", "08.00", "23.00", "wib"],
    );
    check("jam 8:00", &["jam", "08.00"]);
    check("pukul 9.30", &["pukul", "09.30"]);
}

#[test]
fn percent_codes_and_phone_numbers_survive() {
    check("DP 50%", &["dp", "50", "persen"]);
    check("V60", &["v60"]);
    check("ID00110012345670823", &["id00110012345670823"]);
    check(
        "0812-3456-7000",
        &["0812", "3456", "7000", "081234567000", "nomor"],
    );
    check(
        "BCA 123-456-7890",
        &["bca", "123", "456", "7890", "1234567890", "nomor"],
    );
    check("Rp 25.000.000", &["25000000"]);
}

#[test]
fn chat_slang_is_normalized() {
    check("gak", &[]);
    check("brp hrg kopi susu", &["harga", "kopi", "susu"]);
    assert_eq!(primaries("ongkirnya brp"), ["ongkos", "kirim"]);
    assert_eq!(
        primaries("ongkir ke jaksel"),
        ["ongkos", "kirim", "jakarta", "selatan"]
    );
    assert_eq!(
        primaries("bs tf ke norek bca?"),
        ["transfer", "nomor", "rekening", "bca"]
    );
    assert_eq!(
        primaries("kalo udh bayar tp blm dikirim gmn"),
        ["bayar", "kirim"]
    );
    assert_eq!(primaries("bisa batalin pesenan?"), ["batal", "pesan"]);
    assert_eq!(primaries("tolong anterin ke kantor"), ["antar", "kantor"]);
}

#[test]
fn stopwords_and_chat_fillers_are_dropped() {
    assert_eq!(
        primaries("halo kak, mau tanya dong apakah ada wifi ya?"),
        ["wifi"]
    );
    assert_eq!(primaries("is there wifi"), ["wifi"]);
    assert!(analyze_query("apa ya kak?").is_empty());
}

#[test]
fn indonesian_stemming_matches_derived_forms_to_their_root() {
    let same = |a: &str, b: &str| {
        let (x, y) = (analyze(a), analyze(b));
        assert!(
            x.iter().any(|t| y.contains(t)),
            "{a:?} → {x:?} shares no token with {b:?} → {y:?}"
        );
    };
    same("pengiriman", "kirim");
    same("dikirimkan", "mengirim");
    same("menerima", "diterima");
    same("terima", "menerima");
    same("menutup", "tutup");
    same("dibatalkan", "pembatalan");
    same("pembayaran", "bayar");
    same("pesanan", "pesan");
    same("pesanannya", "memesan");
    same("disangrai", "sangrai");
    same("memakai", "pemakaian");
    same("minuman", "minum");
    same("pemilik", "milik");
    same("mengonfirmasi", "konfirmasi");
}

#[test]
fn guarded_roots_are_not_mangled() {
    for root in [
        "minggu", "makan", "jalan", "kopi", "harga", "menu", "terima", "kelapa", "tunai", "lebaran",
    ] {
        assert_eq!(analyze(root), [root], "{root}");
    }
}

#[test]
fn english_inflections_meet_their_base_form() {
    assert_eq!(analyze("accepted cards"), analyze("accept card"));
    assert_eq!(analyze("shipped beans"), analyze("ship bean"));
    assert_eq!(analyze("hours"), analyze("hour"));
    assert_eq!(analyze("closed"), analyze("close"));
}

#[test]
fn query_terms_carry_cross_language_synonyms() {
    let terms = analyze_query("cash");
    let alternatives: Vec<&str> = terms[0]
        .alternatives
        .iter()
        .map(|(t, _)| t.as_str())
        .collect();
    assert!(alternatives.contains(&"tunai"), "{alternatives:?}");
    let terms = analyze_query("lebaran");
    assert!(terms[0].alternatives.iter().any(|(t, _)| t == "idul"));
    let terms = analyze_query("harga");
    let price = analyze("price").remove(0);
    assert!(
        terms[0]
            .alternatives
            .iter()
            .any(|(t, f)| *t == price && *f < 1.0)
    );
}

#[test]
fn slang_targets_are_not_slang_themselves() {
    for (from, to) in lexicon::SLANG {
        for part in to.split_whitespace() {
            assert!(
                !SLANG.contains_key(part) || part == *from,
                "{from} → {to}: {part} is slang"
            );
        }
    }
}

#[test]
fn language_is_guessed_from_function_words() {
    assert_eq!(detect_language("is there wifi"), Some(Language::English));
    assert_eq!(
        detect_language("bayar pake gopay bisa?"),
        Some(Language::Indonesian)
    );
    assert_eq!(detect_language("minimum order delivery"), None);
}

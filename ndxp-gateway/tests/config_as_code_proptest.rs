//! The registry file's parser never panics: random text, and valid files
//! with bytes changed, inserted or cut, give a file or an error; a file
//! that parses writes back to text that parses to the same file.
#![allow(clippy::unwrap_used)]

use ndxp_gateway::management::catalog::CatalogFile;
use proptest::prelude::*;

const VALID: &str = r#"format = 1
instance = "VN"

[[members]]
id = "VN/GOV/BCA"
name = "Bộ Công an"

[[subsystems]]
id = "VN/GOV/BCA/CSDLDC"

[[groups]]
code = "finance"
description = "Finance"
members = ["VN/GOV/BCA/CSDLDC"]

[[services]]
id = "VN/GOV/BCA/CSDLDC/citizen/v1"
description = "Citizen lookup"
openapi = '{"openapi":"3.1.0"}'
deprecated_at = "2026-06-01T00:00:00Z"
sunset_at = "2026-12-01T00:00:00Z"

[[access]]
service = "VN/GOV/BCA/CSDLDC/citizen/v1"
group = "finance"

[[gateway_services]]
service = "VN/GOV/BCA/CSDLDC/citizen/v1"
state = "published"
backend_url = "http://127.0.0.1:9000/"
rate_per_sec = 5

[gateway_services.backend_tls]
ca_file = "/etc/ndxp/backend-ca.pem"

[[subscriptions]]
service = "VN/GOV/BCA/CSDLDC/citizen/v1"
client = "VN/GOV/BCA/CSDLDC"
state = "approved"
quota_per_day = 100
"#;

#[test]
fn the_example_parses_and_round_trips() {
    let file = CatalogFile::parse(VALID).unwrap();
    let again = CatalogFile::parse(&file.render().unwrap()).unwrap();
    assert_eq!(file, again);
}

fn round_trips(text: &str) {
    if let Ok(file) = CatalogFile::parse(text) {
        let rendered = file.render().unwrap();
        assert_eq!(CatalogFile::parse(&rendered).unwrap(), file, "{rendered}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_text_never_panics(text in "\\PC{0,400}") {
        round_trips(&text);
    }

    #[test]
    fn edited_files_never_panic(
        at in 0usize..VALID.len(),
        cut in 0usize..40,
        insert in prop::sample::select(vec![
            "", "\"", "[[", "]]", "=", "\n", "x = 1\n", "[[members]]\n", "'", "\u{0}",
            "state = \"withdrawn\"\n", "members = [\"VN/GOV/BCA/CSDLDC\"]\n", "9999999999999999999999",
        ]),
    ) {
        let mut bytes = VALID.as_bytes().to_vec();
        let end = (at + cut).min(bytes.len());
        bytes.splice(at..end, insert.bytes());
        // Cutting inside a multi-byte character makes text that is not
        // UTF-8: a reader of the file refuses it before the parser.
        if let Ok(text) = String::from_utf8(bytes) {
            round_trips(&text);
        }
    }
}

//! Helpers shared by several commands. Command modules never import each other: what two of them
//! need lives here.

/// Parses a kebab-case enum value the way the TOML config spells it.
pub fn parse<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|e| format!("{s}: {e}"))
}

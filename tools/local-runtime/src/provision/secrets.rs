//! Secrets Manager secrets, with the value `GenerateSecretString` would give them.

use super::names::LocalNames;
use super::{Active, Clients, ProvisionError, Scalar, emulator, unsupported};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Properties {
    #[serde(default)]
    secret_string: Option<String>,
    #[serde(default)]
    generate_secret_string: Option<Generate>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Generate {
    #[serde(default)]
    password_length: Option<Scalar>,
    #[serde(default)]
    secret_string_template: Option<String>,
    #[serde(default)]
    generate_string_key: Option<String>,
}

/// The value a secret is created with: its `SecretString`, or what
/// `GenerateSecretString` would write (the template JSON with a random alphanumeric
/// string under `GenerateStringKey`, or the bare random string).
fn value(p: &Properties) -> Result<String, String> {
    if let Some(text) = &p.secret_string {
        return Ok(text.clone());
    }
    let Some(generate) = &p.generate_secret_string else {
        return Err("a secret needs SecretString or GenerateSecretString".into());
    };
    let length = generate
        .password_length
        .as_ref()
        .and_then(Scalar::parse::<usize>)
        .unwrap_or(32);
    let random: String = std::iter::repeat_with(|| uuid::Uuid::new_v4().simple().to_string())
        .flat_map(|chunk| chunk.chars().collect::<Vec<_>>())
        .take(length)
        .collect();
    match (
        &generate.secret_string_template,
        &generate.generate_string_key,
    ) {
        (Some(template), Some(key)) => {
            let mut json: serde_json::Map<String, Value> = serde_json::from_str(template)
                .map_err(|e| format!("SecretStringTemplate is not a JSON object: {e}"))?;
            json.insert(key.clone(), json!(random));
            Ok(Value::Object(json).to_string())
        }
        (None, None) => Ok(random),
        _ => Err("SecretStringTemplate and GenerateStringKey go together".into()),
    }
}

pub(super) async fn create(
    active: &Active<'_>,
    names: &mut LocalNames<'_>,
    clients: &Clients,
) -> Result<(), ProvisionError> {
    for (id, resource) in active.of_type("AWS::SecretsManager::Secret") {
        let p: Properties = super::properties(id, resource, names)?;
        let value = value(&p).map_err(|e| unsupported(id, e))?;
        let out = clients
            .secrets
            .create_secret()
            .name(names.physical(id))
            .secret_string(value)
            .send()
            .await
            .map_err(emulator(id))?;
        names
            .secrets
            .insert(id.to_owned(), out.arn.unwrap_or_default());
    }
    Ok(())
}

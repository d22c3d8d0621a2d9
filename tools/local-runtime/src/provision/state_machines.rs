//! Step Functions state machines: the real ASL file with its substitutions resolved.

use super::names::LocalNames;
use super::{Active, Clients, ProvisionError, Scalar, emulator, unsupported};
use crate::ACCOUNT_ID;
use aws_sdk_sfn::types::StateMachineType;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Properties {
    definition_uri: String,
    #[serde(default)]
    definition_substitutions: BTreeMap<String, Scalar>,
    #[serde(default, rename = "Type")]
    machine_type: Option<String>,
}

/// Creates the state machines; returns their ARNs by logical id.
pub(super) async fn create(
    active: &Active<'_>,
    names: &LocalNames<'_>,
    clients: &Clients,
) -> Result<BTreeMap<String, String>, ProvisionError> {
    let mut machines = BTreeMap::new();
    for (id, resource) in active.of_type("AWS::Serverless::StateMachine") {
        let p: Properties = super::properties(id, resource, names)?;
        let uri = &p.definition_uri;
        let mut definition = std::fs::read_to_string(names.template.dir.join(uri))
            .map_err(|e| unsupported(id, format!("cannot read {uri}: {e}")))?;
        for (key, value) in &p.definition_substitutions {
            definition = definition.replace(&format!("${{{key}}}"), &value.text());
        }
        if let Some(at) = definition.find("${") {
            let name: String = definition[at..].chars().take_while(|c| *c != '}').collect();
            return Err(unsupported(
                id,
                format!("definition uses {name}}} but DefinitionSubstitutions does not define it"),
            ));
        }
        let machine_type = match p.machine_type.as_deref() {
            Some("EXPRESS") => StateMachineType::Express,
            _ => StateMachineType::Standard,
        };
        let out = clients
            .sfn
            .create_state_machine()
            .name(names.physical(id))
            .definition(definition)
            .role_arn(format!(
                "arn:aws:iam::{ACCOUNT_ID}:role/{}-saga",
                names.prefix
            ))
            .r#type(machine_type)
            .send()
            .await
            .map_err(emulator(id))?;
        machines.insert(id.to_owned(), out.state_machine_arn);
    }
    Ok(machines)
}

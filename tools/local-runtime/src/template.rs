//! Reading `template.yaml` and resolving its intrinsic functions for one local stack.

use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The template cannot be used locally.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// File path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The YAML is invalid.
    #[error("template is not valid YAML: {0}")]
    Yaml(#[from] serde_norway::Error),
    /// A construct the local runtime cannot honour; names the resource.
    #[error("resource {resource}: {reason}")]
    Unsupported {
        /// Logical id.
        resource: String,
        /// What is not supported.
        reason: String,
    },
}

/// A parsed template: resources and parameters in CloudFormation's JSON form, with
/// YAML short tags (`!Ref`, `!GetAtt`, ...) rewritten to their long form.
#[derive(Debug, Clone)]
pub struct Template {
    /// Folder of the template; `DefinitionUri` and `CodeUri` are relative to it.
    pub dir: PathBuf,
    /// Logical id to resource (`Type`, `Properties`, ...).
    pub resources: BTreeMap<String, Value>,
    /// Parameter name to its default.
    pub parameters: BTreeMap<String, Value>,
    /// Parameter name to its whole declaration (type, bounds, pattern), for checks of
    /// the template itself; the local runtime uses only the defaults.
    pub parameter_declarations: BTreeMap<String, Value>,
    /// Conditions section.
    pub conditions: Map<String, Value>,
    /// Rules section: parameter assertions CloudFormation checks before it creates
    /// anything.
    pub rules: Map<String, Value>,
    /// `Globals.Function`, merged into every `AWS::Serverless::Function`.
    pub function_globals: Value,
    /// Output name to its `Value` expression; operator tools find resources through these.
    pub outputs: BTreeMap<String, Value>,
}

fn to_json(value: serde_norway::Value) -> Value {
    use serde_norway::Value as Y;
    match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                json!(i)
            } else if let Some(u) = n.as_u64() {
                json!(u)
            } else {
                json!(n.as_f64().unwrap_or_default())
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(to_json).collect()),
        Y::Mapping(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let key = match to_json(k) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let tag = tag.trim_start_matches('!');
            let inner = to_json(tagged.value);
            match tag {
                "Ref" => json!({ "Ref": inner }),
                "GetAtt" => match inner {
                    Value::String(s) => {
                        let (resource, attribute) = s.split_once('.').unwrap_or((&s, ""));
                        json!({ "Fn::GetAtt": [resource, attribute] })
                    }
                    other => json!({ "Fn::GetAtt": other }),
                },
                "Condition" => json!({ "Condition": inner }),
                other => json!({ format!("Fn::{other}"): inner }),
            }
        }
    }
}

impl Template {
    /// Reads and parses a template file.
    pub fn load(path: &Path) -> Result<Self, TemplateError> {
        let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut doc = to_json(serde_norway::from_str(&text)?);
        let take =
            |doc: &mut Value, key: &str| doc.get_mut(key).map(Value::take).unwrap_or(Value::Null);
        let resources = match take(&mut doc, "Resources") {
            Value::Object(m) => m.into_iter().collect(),
            _ => BTreeMap::new(),
        };
        let parameter_declarations: BTreeMap<String, Value> = match take(&mut doc, "Parameters") {
            Value::Object(m) => m.into_iter().collect(),
            _ => BTreeMap::new(),
        };
        let parameters = parameter_declarations
            .iter()
            .map(|(k, v)| (k.clone(), v.get("Default").cloned().unwrap_or(Value::Null)))
            .collect();
        let conditions = match take(&mut doc, "Conditions") {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        let rules = match take(&mut doc, "Rules") {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        let outputs = match take(&mut doc, "Outputs") {
            Value::Object(m) => m
                .into_iter()
                .filter_map(|(k, v)| Some((k, v.get("Value")?.clone())))
                .collect(),
            _ => BTreeMap::new(),
        };
        let function_globals = doc
            .pointer("/Globals/Function")
            .cloned()
            .unwrap_or_else(|| json!({}));
        Ok(Self {
            dir: path.parent().map(Path::to_owned).unwrap_or_default(),
            resources,
            parameters,
            parameter_declarations,
            conditions,
            rules,
            function_globals,
            outputs,
        })
    }

    /// Logical ids of resources of a type, in name order.
    pub fn of_type(&self, kind: &str) -> Vec<(&String, &Value)> {
        self.resources
            .iter()
            .filter(|(_, r)| r.get("Type").and_then(Value::as_str) == Some(kind))
            .collect()
    }

    /// The type of a resource.
    pub fn kind_of(&self, logical_id: &str) -> Option<&str> {
        self.resources.get(logical_id)?.get("Type")?.as_str()
    }

    /// A parameter's default as a whole number, written bare or quoted (CloudFormation
    /// takes both for a `Number`).
    pub fn default_number(&self, name: &str) -> Option<u64> {
        let value = self.parameters.get(name)?;
        value
            .as_u64()
            .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
    }
}

/// How `Ref` and `Fn::GetAtt` resolve for one stack.
pub trait Names {
    /// `Ref` of a resource or parameter.
    fn reference(&self, logical_id: &str) -> Option<Value>;
    /// `Fn::GetAtt` of a resource.
    fn attribute(&self, logical_id: &str, attribute: &str) -> Option<Value>;
}

/// Resolves intrinsic functions in a value. `AWS::NoValue` removes the key or item.
pub fn resolve(value: &Value, names: &dyn Names, template: &Template) -> Result<Value, String> {
    Ok(resolve_opt(value, names, template)?.unwrap_or(Value::Null))
}

fn resolve_opt(
    value: &Value,
    names: &dyn Names,
    template: &Template,
) -> Result<Option<Value>, String> {
    match value {
        Value::Object(map) if map.len() == 1 => {
            let (key, arg) = map
                .iter()
                .next()
                .map(|(k, v)| (k.as_str(), v))
                .unwrap_or(("", value));
            match key {
                "Ref" => {
                    let target = arg.as_str().ok_or("Ref needs a name")?;
                    if target == "AWS::NoValue" {
                        return Ok(None);
                    }
                    names
                        .reference(target)
                        .map(Some)
                        .ok_or(format!("cannot resolve Ref {target}"))
                }
                "Fn::GetAtt" => {
                    let parts: Vec<&str> = arg
                        .as_array()
                        .map(|a| a.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    let [resource, attribute] = parts.as_slice() else {
                        return Err(format!("bad Fn::GetAtt {arg}"));
                    };
                    names
                        .attribute(resource, attribute)
                        .map(Some)
                        .ok_or(format!("cannot resolve Fn::GetAtt {resource}.{attribute}"))
                }
                "Fn::Sub" => {
                    let text = arg
                        .as_str()
                        .ok_or("only the one-argument Fn::Sub is supported")?;
                    substitute(text, names).map(|s| Some(Value::String(s)))
                }
                "Fn::If" => {
                    let items = arg
                        .as_array()
                        .filter(|a| a.len() == 3)
                        .ok_or("Fn::If needs three items")?;
                    let condition = items[0].as_str().ok_or("Fn::If needs a condition name")?;
                    let branch = if evaluate_condition(condition, names, template)? {
                        &items[1]
                    } else {
                        &items[2]
                    };
                    resolve_opt(branch, names, template)
                }
                "Fn::Split" => {
                    let items = arg
                        .as_array()
                        .filter(|a| a.len() == 2)
                        .ok_or("Fn::Split needs two items")?;
                    let separator = items[0].as_str().ok_or("Fn::Split needs a separator")?;
                    let text = resolve(&items[1], names, template)?;
                    let text = text.as_str().ok_or("Fn::Split splits a string")?;
                    Ok(Some(Value::Array(
                        text.split(separator)
                            .map(|part| Value::String(part.to_owned()))
                            .collect(),
                    )))
                }
                "Fn::Join" => {
                    let items = arg
                        .as_array()
                        .filter(|a| a.len() == 2)
                        .ok_or("Fn::Join needs two items")?;
                    let separator = items[0].as_str().unwrap_or("");
                    let parts = resolve(&items[1], names, template)?;
                    let parts: Vec<String> = parts
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .map(|v| {
                                    v.as_str()
                                        .map(str::to_owned)
                                        .unwrap_or_else(|| v.to_string())
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    Ok(Some(Value::String(parts.join(separator))))
                }
                _ => resolve_map(map, names, template),
            }
        }
        Value::Object(map) => resolve_map(map, names, template),
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                if let Some(v) = resolve_opt(item, names, template)? {
                    out.push(v);
                }
            }
            Ok(Some(Value::Array(out)))
        }
        other => Ok(Some(other.clone())),
    }
}

fn resolve_map(
    map: &Map<String, Value>,
    names: &dyn Names,
    template: &Template,
) -> Result<Option<Value>, String> {
    let mut out = Map::new();
    for (k, v) in map {
        if let Some(v) = resolve_opt(v, names, template)? {
            out.insert(k.clone(), v);
        }
    }
    Ok(Some(Value::Object(out)))
}

fn scalar(v: Value) -> String {
    match v {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

fn substitute(text: &str, names: &dyn Names) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed ${{ in {text}"))?;
        let name = &after[..end];
        let value = match name.split_once('.') {
            Some((resource, attribute)) if !name.starts_with("AWS::") => {
                names.attribute(resource, attribute)
            }
            _ => names.reference(name),
        };
        out.push_str(&scalar(
            value.ok_or_else(|| format!("cannot resolve ${{{name}}} in {text}"))?,
        ));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A rule whose assertion failed, as CloudFormation refuses the stack.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule {rule} refuses these parameters: {description}")]
pub struct RuleViolation {
    /// The rule's name.
    pub rule: String,
    /// Its `AssertDescription`.
    pub description: String,
}

/// Checks the template's `Rules` against the parameters `names` resolves, as
/// CloudFormation does before creating anything: a rule whose `RuleCondition` holds
/// (or that has none) must have every `Assert` true.
pub fn check_rules(names: &dyn Names, template: &Template) -> Result<(), RuleViolation> {
    let violation = |rule: &str, description: String| RuleViolation {
        rule: rule.to_owned(),
        description,
    };
    for (rule, body) in &template.rules {
        let applies = match body.get("RuleCondition") {
            Some(condition) => {
                evaluate(condition, names, template).map_err(|e| violation(rule, e))?
            }
            None => true,
        };
        if !applies {
            continue;
        }
        for assertion in body
            .get("Assertions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let holds = assertion
                .get("Assert")
                .ok_or_else(|| "an assertion without Assert".to_owned())
                .and_then(|a| evaluate(a, names, template))
                .map_err(|e| violation(rule, e))?;
            if !holds {
                let description = assertion
                    .get("AssertDescription")
                    .and_then(Value::as_str)
                    .unwrap_or("an assertion failed");
                return Err(violation(rule, description.to_owned()));
            }
        }
    }
    Ok(())
}

fn evaluate_condition(name: &str, names: &dyn Names, template: &Template) -> Result<bool, String> {
    let condition = template
        .conditions
        .get(name)
        .ok_or(format!("unknown condition {name}"))?;
    evaluate(condition, names, template)
}

fn evaluate(expr: &Value, names: &dyn Names, template: &Template) -> Result<bool, String> {
    let map = expr
        .as_object()
        .filter(|m| m.len() == 1)
        .ok_or(format!("bad condition {expr}"))?;
    let (key, arg) = map.iter().next().ok_or("empty condition")?;
    let list = || arg.as_array().cloned().unwrap_or_default();
    match key.as_str() {
        "Fn::Equals" => {
            let items = list();
            let [a, b] = items.as_slice() else {
                return Err("Fn::Equals needs two items".into());
            };
            Ok(scalar(resolve(a, names, template)?) == scalar(resolve(b, names, template)?))
        }
        "Fn::Not" => Ok(!evaluate(
            list().first().ok_or("Fn::Not needs an item")?,
            names,
            template,
        )?),
        "Fn::And" => list()
            .iter()
            .try_fold(true, |acc, c| Ok(acc && evaluate(c, names, template)?)),
        "Fn::Or" => list()
            .iter()
            .try_fold(false, |acc, c| Ok(acc || evaluate(c, names, template)?)),
        "Condition" => evaluate_condition(
            arg.as_str().ok_or("Condition needs a name")?,
            names,
            template,
        ),
        // Rules only: whether the list holds the value.
        "Fn::Contains" => {
            let items = list();
            let [among, value] = items.as_slice() else {
                return Err("Fn::Contains needs a list and a value".into());
            };
            let value = scalar(resolve(value, names, template)?);
            let among = resolve(among, names, template)?;
            Ok(among
                .as_array()
                .is_some_and(|a| a.iter().any(|v| scalar(v.clone()) == value)))
        }
        other => Err(format!("unsupported condition function {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl Names for Fixed {
        fn reference(&self, id: &str) -> Option<Value> {
            match id {
                "Stage" => Some(json!("dev")),
                "Queue" => Some(json!("http://q")),
                "AWS::StackName" => Some(json!("s")),
                _ => None,
            }
        }
        fn attribute(&self, id: &str, attribute: &str) -> Option<Value> {
            (id == "Queue" && attribute == "Arn").then(|| json!("arn:q"))
        }
    }

    fn template(yaml: &str) -> Template {
        let dir = std::env::temp_dir().join(format!("tpl-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("template.yaml");
        std::fs::write(&path, yaml).unwrap();
        Template::load(&path).unwrap()
    }

    #[test]
    fn resolves_short_tags_subs_and_conditions() {
        let t = template(
            "Conditions:\n  Auth: !Not [!Equals [!Ref Stage, dev]]\nResources:\n  X:\n    Type: T\n    Properties:\n      A: !Ref Queue\n      B: !GetAtt Queue.Arn\n      C: !Sub \"${AWS::StackName}-bus\"\n      D: !If [Auth, JWT, NONE]\n      E: !If [Auth, x, !Ref AWS::NoValue]\n      F: !Split [\",\", \"a,b\"]\n",
        );
        let props = resolve(&t.resources["X"]["Properties"], &Fixed, &t).unwrap();
        assert_eq!(
            props,
            json!({"A": "http://q", "B": "arn:q", "C": "s-bus", "D": "NONE", "F": ["a", "b"]})
        );
    }

    #[test]
    fn names_what_it_cannot_resolve() {
        let t = template("Resources:\n  X:\n    Type: T\n    Properties:\n      A: !Ref Missing\n");
        let err = resolve(&t.resources["X"]["Properties"], &Fixed, &t).unwrap_err();
        assert!(err.contains("Missing"), "{err}");
    }
}

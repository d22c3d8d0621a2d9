//! The HTTP API as API Gateway serves it: its stage, its JWT authorizers and its
//! routes to the template's functions. Nothing is created; `shop local` serves them.

use super::names::LocalNames;
use super::{
    Active, ProvisionError, Route, RouteAuthorization, Scalar, Stack, Throttle, unsupported,
};
use crate::jwt_authorizer::AuthorizerSpec;
use crate::template::resolve;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ApiProperties {
    #[serde(default)]
    cors_configuration: Option<crate::cors::Cors>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StageProperties {
    stage_name: String,
    #[serde(default)]
    default_route_settings: Option<RouteSettings>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RouteSettings {
    #[serde(default)]
    throttling_burst_limit: Option<Scalar>,
    #[serde(default)]
    throttling_rate_limit: Option<Scalar>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AuthorizerProperties {
    authorizer_type: String,
    #[serde(default)]
    identity_source: Vec<String>,
    jwt_configuration: JwtConfiguration,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct JwtConfiguration {
    #[serde(default)]
    issuer: String,
    #[serde(default)]
    audience: Vec<Scalar>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RouteProperties {
    #[serde(default)]
    authorization_type: Option<String>,
    #[serde(default)]
    authorizer_id: Option<String>,
    #[serde(default)]
    authorization_scopes: Vec<Scalar>,
    route_key: String,
    target: String,
}

pub(super) fn declare(
    active: &Active<'_>,
    names: &LocalNames<'_>,
    stack: &mut Stack,
) -> Result<(), ProvisionError> {
    let apis: Vec<_> = active.of_type("AWS::ApiGatewayV2::Api").collect();
    if let Some((id, _)) = apis.get(1) {
        return Err(unsupported(id, "the local runtime serves one HTTP API"));
    }
    if let Some((id, resource)) = apis.first() {
        let p: ApiProperties = super::properties(id, resource, names)?;
        stack.cors = p.cors_configuration;
    }
    let stages: Vec<_> = active.of_type("AWS::ApiGatewayV2::Stage").collect();
    if let [(id, resource)] = stages.as_slice() {
        let p: StageProperties = super::properties(id, resource, names)?;
        if p.stage_name.is_empty() {
            return Err(unsupported(id, "StageName must be a name or $default"));
        }
        stack.stage = p.stage_name;
        if let Some(settings) = p.default_route_settings {
            stack.throttle = match (
                settings.throttling_rate_limit,
                settings.throttling_burst_limit,
            ) {
                (None, None) => None,
                (Some(rate), Some(burst)) => Some(Throttle {
                    rate: rate
                        .parse()
                        .filter(|r: &f64| *r >= 0.0)
                        .ok_or_else(|| unsupported(id, "ThrottlingRateLimit must be a number"))?,
                    burst: burst.parse().ok_or_else(|| {
                        unsupported(id, "ThrottlingBurstLimit must be a whole number")
                    })?,
                }),
                _ => {
                    return Err(unsupported(
                        id,
                        "set ThrottlingRateLimit and ThrottlingBurstLimit together",
                    ));
                }
            };
        }
    } else if stages.len() > 1 {
        return Err(unsupported(
            stages[1].0,
            "the local runtime serves one stage of one HTTP API",
        ));
    }

    for (id, resource) in active.of_type("AWS::ApiGatewayV2::Authorizer") {
        let p: AuthorizerProperties = super::properties(id, resource, names)?;
        if p.authorizer_type != "JWT" {
            return Err(unsupported(
                id,
                "only JWT authorizers run locally (AuthorizerType: JWT)",
            ));
        }
        let identity_header = match p.identity_source.as_slice() {
            [source] => source
                .strip_prefix("$request.header.")
                .map(str::to_ascii_lowercase),
            _ => None,
        }
        .ok_or_else(|| {
            unsupported(
                id,
                "IdentitySource must be one $request.header.NAME, as JWT authorizers require",
            )
        })?;
        if p.jwt_configuration.issuer.is_empty() {
            return Err(unsupported(id, "JwtConfiguration.Issuer is empty"));
        }
        let audiences: Vec<String> = p
            .jwt_configuration
            .audience
            .iter()
            .map(Scalar::text)
            .collect();
        if audiences.is_empty() {
            return Err(unsupported(id, "JwtConfiguration.Audience is empty"));
        }
        stack.authorizers.insert(
            id.to_owned(),
            AuthorizerSpec {
                identity_header,
                issuer: p.jwt_configuration.issuer,
                audiences,
            },
        );
    }

    for (id, resource) in active.of_type("AWS::ApiGatewayV2::Route") {
        let p: RouteProperties = super::properties(id, resource, names)?;
        let authorization = match p.authorization_type.as_deref() {
            None | Some("NONE") => None,
            Some("JWT") => {
                let authorizer = p
                    .authorizer_id
                    .filter(|a| stack.authorizers.contains_key(a))
                    .ok_or_else(|| {
                        unsupported(
                            id,
                            "AuthorizerId must name a JWT authorizer of the template",
                        )
                    })?;
                let scopes = p.authorization_scopes.iter().map(Scalar::text).collect();
                Some(RouteAuthorization { authorizer, scopes })
            }
            Some(other) => {
                return Err(unsupported(
                    id,
                    format!("AuthorizationType {other} is not supported locally"),
                ));
            }
        };
        let (method, path) = p.route_key.split_once(' ').ok_or_else(|| {
            unsupported(
                id,
                format!("route key {:?} is not METHOD /path", p.route_key),
            )
        })?;
        let integration = p
            .target
            .strip_prefix("integrations/")
            .ok_or_else(|| unsupported(id, "Target must be integrations/<Integration>"))?;
        let function_arn = names
            .template
            .resources
            .get(integration)
            .and_then(|i| i.pointer("/Properties/IntegrationUri"))
            .map(|uri| resolve(uri, names, names.template))
            .transpose()
            .map_err(|e| unsupported(id, e))?
            .and_then(|v| v.as_str().map(str::to_owned))
            .ok_or_else(|| {
                unsupported(
                    id,
                    format!("integration {integration} has no IntegrationUri"),
                )
            })?;
        let function = stack
            .functions
            .values()
            .find(|f| function_arn.ends_with(&format!(":function:{}", f.name)))
            .ok_or_else(|| {
                unsupported(
                    id,
                    format!(
                        "integration {integration} does not target a function of this template"
                    ),
                )
            })?;
        stack.routes.push(Route {
            method: method.to_owned(),
            path: path.to_owned(),
            function: function.logical_id.clone(),
            authorization,
        });
    }
    Ok(())
}

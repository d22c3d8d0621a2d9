//! CloudWatch alarms and dashboards, created as declared so operator commands find
//! the same ones locally as on AWS (the emulator never evaluates an alarm: its state
//! stays `INSUFFICIENT_DATA`).

use super::names::LocalNames;
use super::{Active, Clients, ProvisionError, Scalar, emulator, unsupported};
use aws_sdk_cloudwatch::types::{
    ComparisonOperator, Dimension, Metric, MetricDataQuery, MetricStat, Statistic,
};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AlarmProperties {
    #[serde(default)]
    alarm_description: Option<String>,
    #[serde(default)]
    alarm_actions: Option<Vec<Scalar>>,
    #[serde(default, rename = "OKActions")]
    ok_actions: Option<Vec<Scalar>>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    metric_name: Option<String>,
    #[serde(default)]
    dimensions: Vec<AlarmDimension>,
    #[serde(default)]
    statistic: Option<String>,
    #[serde(default)]
    extended_statistic: Option<String>,
    #[serde(default)]
    metrics: Option<Vec<Query>>,
    #[serde(default)]
    period: Option<Scalar>,
    #[serde(default)]
    evaluation_periods: Option<Scalar>,
    #[serde(default)]
    datapoints_to_alarm: Option<Scalar>,
    #[serde(default)]
    threshold: Option<Scalar>,
    #[serde(default)]
    comparison_operator: Option<String>,
    #[serde(default)]
    treat_missing_data: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AlarmDimension {
    name: String,
    value: Scalar,
}

/// One query of a metric math alarm.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Query {
    id: String,
    #[serde(default)]
    expression: Option<String>,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    return_data: Option<bool>,
    #[serde(default)]
    metric_stat: Option<QueryStat>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct QueryStat {
    metric: QueryMetric,
    period: Scalar,
    stat: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct QueryMetric {
    namespace: String,
    metric_name: String,
    #[serde(default)]
    dimensions: Vec<AlarmDimension>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DashboardProperties {
    #[serde(default)]
    dashboard_name: Option<String>,
    dashboard_body: String,
}

fn dimensions(declared: &[AlarmDimension]) -> Vec<Dimension> {
    declared
        .iter()
        .map(|d| {
            Dimension::builder()
                .name(&d.name)
                .value(d.value.text())
                .build()
        })
        .collect()
}

fn texts(list: Option<Vec<Scalar>>) -> Option<Vec<String>> {
    list.map(|l| l.iter().map(Scalar::text).collect())
}

async fn create_alarm(
    id: &str,
    p: AlarmProperties,
    name: &str,
    clients: &Clients,
) -> Result<(), ProvisionError> {
    let number = |v: &Option<Scalar>| v.as_ref().and_then(Scalar::parse::<f64>);
    let queries = p.metrics.map(|queries| {
        queries
            .into_iter()
            .map(|q| {
                let stat = q.metric_stat.map(|m| {
                    MetricStat::builder()
                        .metric(
                            Metric::builder()
                                .namespace(m.metric.namespace)
                                .metric_name(m.metric.metric_name)
                                .set_dimensions(Some(dimensions(&m.metric.dimensions)))
                                .build(),
                        )
                        .set_period(m.period.parse())
                        .stat(m.stat)
                        .build()
                });
                MetricDataQuery::builder()
                    .id(q.id)
                    .set_expression(q.expression)
                    .set_label(q.label)
                    .set_return_data(q.return_data)
                    .set_metric_stat(stat)
                    .build()
            })
            .collect::<Vec<_>>()
    });
    let single = queries.is_none();
    clients
        .cloudwatch
        .put_metric_alarm()
        .alarm_name(name)
        .set_alarm_description(p.alarm_description)
        .set_alarm_actions(texts(p.alarm_actions))
        .set_ok_actions(texts(p.ok_actions))
        .set_namespace(p.namespace)
        .set_metric_name(p.metric_name)
        .set_dimensions(single.then(|| dimensions(&p.dimensions)))
        .set_statistic(p.statistic.map(|s| Statistic::from(s.as_str())))
        .set_extended_statistic(p.extended_statistic)
        .set_metrics(queries)
        .set_period(number(&p.period).map(|v| v as i32))
        .set_evaluation_periods(number(&p.evaluation_periods).map(|v| v as i32))
        .set_datapoints_to_alarm(number(&p.datapoints_to_alarm).map(|v| v as i32))
        .set_threshold(number(&p.threshold))
        .set_comparison_operator(
            p.comparison_operator
                .map(|s| ComparisonOperator::from(s.as_str())),
        )
        .set_treat_missing_data(p.treat_missing_data)
        .send()
        .await
        .map_err(emulator(id))?;
    Ok(())
}

pub(super) async fn create(
    active: &Active<'_>,
    names: &LocalNames<'_>,
    clients: &Clients,
) -> Result<(), ProvisionError> {
    for (id, resource) in active.of_type("AWS::CloudWatch::Alarm") {
        let p: AlarmProperties = super::properties(id, resource, names)?;
        create_alarm(id, p, &names.physical(id), clients).await?;
    }
    for (id, resource) in active.of_type("AWS::CloudWatch::Dashboard") {
        let p: DashboardProperties = super::properties(id, resource, names)?;
        serde_json::from_str::<Value>(&p.dashboard_body)
            .map_err(|e| unsupported(id, format!("DashboardBody is not JSON: {e}")))?;
        clients
            .cloudwatch
            .put_dashboard()
            .dashboard_name(p.dashboard_name.unwrap_or_else(|| names.physical(id)))
            .dashboard_body(p.dashboard_body)
            .send()
            .await
            .map_err(emulator(id))?;
    }
    Ok(())
}

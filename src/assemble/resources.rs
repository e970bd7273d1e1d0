//! `linux.resources` in the key order Go's runtime-spec structs print.
//!
//! Takes the resources mapping (from the YAML or the label, already with
//! the device cgroup rules appended); gives an [`OrderedJson`] whose keys
//! follow the `specs-go` field order (`devices, memory, cpu, pids, …`) so
//! the bytes match LinuxKit. Keys the table does not know (and the Go
//! maps `rdma`, `unified`) come after the known ones, sorted. Never adds,
//! drops or checks a value.

use super::oci_types::OrderedJson;

/// Field order of each runtime-spec struct, by the key that holds it.
fn order_of(context: &str) -> &'static [&'static str] {
    match context {
        "" => &[
            "devices",
            "memory",
            "cpu",
            "pids",
            "blockIO",
            "hugepageLimits",
            "network",
            "rdma",
            "unified",
        ],
        "devices" => &["allow", "type", "major", "minor", "access"],
        "memory" => &[
            "limit",
            "reservation",
            "swap",
            "kernel",
            "kernelTCP",
            "swappiness",
            "disableOOMKiller",
            "useHierarchy",
            "checkBeforeUpdate",
        ],
        "cpu" => &[
            "shares",
            "quota",
            "burst",
            "period",
            "realtimeRuntime",
            "realtimePeriod",
            "cpus",
            "mems",
            "idle",
        ],
        "pids" => &["limit"],
        "blockIO" => &[
            "weight",
            "leafWeight",
            "weightDevice",
            "throttleReadBpsDevice",
            "throttleWriteBpsDevice",
            "throttleReadIOPSDevice",
            "throttleWriteIOPSDevice",
        ],
        "weightDevice" => &["major", "minor", "weight", "leafWeight"],
        "throttleReadBpsDevice"
        | "throttleWriteBpsDevice"
        | "throttleReadIOPSDevice"
        | "throttleWriteIOPSDevice" => &["major", "minor", "rate"],
        "hugepageLimits" => &["pageSize", "limit"],
        "network" => &["classID", "priorities"],
        "priorities" => &["name", "priority"],
        "rdma entry" => &["hcaHandles", "hcaObjects"],
        _ => &[],
    }
}

/// Order a resources mapping (the top-level object of `linux.resources`).
pub fn ordered_resources(map: &serde_json::Map<String, serde_json::Value>) -> OrderedJson {
    ordered_object(map, "")
}

fn ordered_object(map: &serde_json::Map<String, serde_json::Value>, context: &str) -> OrderedJson {
    let order = order_of(context);
    let mut fields: Vec<(String, OrderedJson)> = Vec::new();
    for key in order {
        if let Some(v) = map.get(*key) {
            fields.push((key.to_string(), ordered(v, key)));
        }
    }
    // serde_json's Map is sorted, so the rest come in key order.
    for (k, v) in map {
        if !order.contains(&k.as_str()) {
            // Children of rdma are keyed by device name: order them as rdma entries.
            let child = if context == "rdma" {
                "rdma entry"
            } else {
                k.as_str()
            };
            fields.push((k.clone(), ordered(v, child)));
        }
    }
    OrderedJson::Object(fields)
}

fn ordered(v: &serde_json::Value, context: &str) -> OrderedJson {
    match v {
        serde_json::Value::Object(m) => ordered_object(m, context),
        serde_json::Value::Array(items) => {
            OrderedJson::Array(items.iter().map(|i| ordered(i, context)).collect())
        }
        scalar => OrderedJson::Scalar(scalar.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assemble::oci_types::to_go_json;

    #[test]
    fn go_field_order() {
        let v = serde_json::json!({
            "pids": {"limit": 10},
            "cpu": {"shares": 2, "cpus": "0-1", "burst": 3},
            "memory": {"swap": 1, "limit": 2},
            "devices": [{"access": "rwm", "type": "c", "allow": false}],
            "unified": {"b": "1", "a": "2"},
        });
        let serde_json::Value::Object(m) = v else {
            unreachable!()
        };
        let text = String::from_utf8(to_go_json(&ordered_resources(&m)).unwrap()).unwrap();
        let compact: String = text.split_whitespace().collect();
        assert_eq!(
            compact,
            r#"{"devices":[{"allow":false,"type":"c","access":"rwm"}],"memory":{"limit":2,"swap":1},"cpu":{"shares":2,"burst":3,"cpus":"0-1"},"pids":{"limit":10},"unified":{"a":"2","b":"1"}}"#
        );
    }
}

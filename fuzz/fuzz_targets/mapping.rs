//! Mapping templates: any JSON as a template (compiled or refused), evaluated against any JSON
//! document (and against the same document read as a call value, which must give the same
//! result, and read as it is evaluated, as the writers read it, which must hold the same
//! values); URL path templates and query strings rendered from it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use soapbridge::call::{Form, Tree, Val};
use soapbridge::mapping::{Doc, PathTemplate, Scope, Template, render_query};

fuzz_target!(|data: &[u8]| {
    // `[template, document]`, or a path template on the first line and a document after it.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(Value::Array(pair)) = serde_json::from_str::<Value>(text)
        && let [template, doc] = pair.as_slice()
    {
        if let Ok(t) = Template::compile(template) {
            let scope = Scope::json(doc);
            let by_value = t.eval(&scope);
            // A backend answer read in place (`Val::from_json_slice`) reads as the `Value` does.
            let text = doc.to_string();
            if let Some(val) = Val::from_json_slice(text.as_bytes()) {
                assert_eq!(val.to_json(), *doc, "{text}");
                let by_val = t.eval(&Scope::new(Doc::Call(&val), Doc::Call(&val)));
                assert_eq!(by_val, by_value, "{text}");
            }
            // What a writer reads from the result as it is evaluated is the evaluated result.
            let lazy = t.read_with(&scope, |l| holds(l, by_value.as_ref().unwrap()));
            assert!(lazy.is_none_or(|same| same), "{template} over {doc}");
            assert_eq!(lazy.is_some(), by_value.is_some());
            let _ = render_query(&[("q".to_string(), t)], &scope);
        }
        return;
    }
    let (path, doc) = text.split_once('\n').unwrap_or((text, "{}"));
    let Ok(doc) = serde_json::from_str::<Value>(doc) else {
        return;
    };
    if let Ok(p) = PathTemplate::parse(path)
        && let Ok(rendered) = p.render(&Scope::json(&doc))
    {
        // Every hole is percent-encoded: nothing of the value can add a segment.
        assert_eq!(
            rendered.matches('/').count(),
            path.matches('/').count()
                - path
                    .split('{')
                    .skip(1)
                    .map(|h| h.split('}').next().unwrap_or("").matches('/').count())
                    .sum::<usize>(),
            "{path} -> {rendered}"
        );
    }
});

/// Whether the tree holds `v`: the same form, scalars equal, a list's present items the same
/// in order, and each of an object's members present and the same.
fn holds<'t, T: Tree<'t>>(t: T, v: &Value) -> bool {
    match (t.form(), v) {
        (Form::Null, Value::Null) => true,
        (Form::Scalar(s), v @ (Value::Bool(_) | Value::Number(_) | Value::String(_))) => {
            s.to_json() == *v
        }
        (Form::List(n), Value::Array(items)) => {
            let present: Vec<T> = (0..n).filter_map(|i| t.item(i)).collect();
            present.len() == items.len() && present.into_iter().zip(items).all(|(t, v)| holds(t, v))
        }
        (Form::Obj, Value::Object(m)) => m
            .iter()
            .all(|(k, v)| t.member(k).is_some_and(|t| holds(t, v))),
        _ => false,
    }
}

//! A backend's answer read a list at a time (`call::JsonList`, as large Flexi lists are read):
//! any bytes, at a few paths. Whenever the whole text is JSON and the list is read this way,
//! its items and the value beside it are those of the whole text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use soapbridge::call::JsonList;

fuzz_target!(|data: &[u8]| {
    let whole = serde_json::from_slice::<Value>(data).ok();
    let paths: [&[&str]; 3] = [&["items"], &[], &["data", "items"]];
    for path in paths {
        let beside: &[&[&str]] = if path.is_empty() { &[] } else { &[&["total"]] };
        let Some((list, values)) = JsonList::find(data, path, beside) else {
            continue;
        };
        let mut read = Vec::new();
        let each = list.each(|v| read.push(v.to_json()));
        // Without a whole read to compare with (nesting beyond serde_json's limit outside the
        // list), reading may fail but not panic.
        let Some(whole) = &whole else {
            continue;
        };
        each.unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(data)));
        let at = path.iter().try_fold(whole, |v, k| v.get(k));
        let expected = match at {
            Some(Value::Array(items)) => items.clone(),
            _ => vec![],
        };
        assert_eq!(read, expected, "{}", String::from_utf8_lossy(data));
        assert_eq!(read.len(), list.len());
        if !beside.is_empty() {
            let total = values[0].as_ref().map(|v| v.to_json());
            assert_eq!(
                total.as_ref(),
                whole.get("total"),
                "{}",
                String::from_utf8_lossy(data)
            );
        }
    }
});

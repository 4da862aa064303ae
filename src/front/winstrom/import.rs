//! Importing a winstrom document: each record created, updated or acted on (by id, or on every
//! record its filter selects), all or nothing by default (an atomic document of several records
//! is first sent as a dry run).

use std::time::Instant;

use http::StatusCode;

use super::Evidence;
use super::http::{Ctx, backend_message, id_backend, not_found, scalar, status_of};
use crate::call::Val;
use crate::config::FieldType;
use crate::error::{Error, Party};
use crate::protocol::winstrom::{self, Mode, Outcome, RawValue, Record, RecordError, Reply, Stats};
use crate::route::Route;

/// What one record's work came to.
enum Done {
    Created(String),
    Updated(String),
    Deleted(String),
    /// Left alone, as its `create="ignore"` or `update="ignore"` asked.
    Skipped(String),
}

/// Why one record failed: its errors, and whether the record was not found.
struct RecordFailure {
    errors: Vec<RecordError>,
    not_found: bool,
}

/// A record's failure, or a backend failure that stops the whole request.
enum StepError {
    Record(RecordFailure),
    Backend(Error),
}

impl From<RecordFailure> for StepError {
    fn from(f: RecordFailure) -> Self {
        StepError::Record(f)
    }
}

/// The evidence's route to `verb` its records (`zakládat`, `měnit`), or the record's failure
/// when it has none.
fn allowed<'r>(
    route: Option<&'r Route>,
    ev: &Evidence,
    verb: &str,
) -> Result<&'r Route, RecordFailure> {
    route.ok_or_else(|| {
        record_error(
            format!("Evidence '{}' neumožňuje {verb} záznamy.", ev.plan.name),
            "NOT_ALLOWED",
        )
    })
}

/// The `id` a create, update or action route's result names ("" when none).
fn result_id(v: &serde_json::Value) -> String {
    v.get("id").map(scalar).unwrap_or_default()
}

/// The failure of a record whose `id` does not exist.
fn not_found_failure(ev: &Evidence, id: &str) -> RecordFailure {
    RecordFailure {
        errors: vec![RecordError {
            message: not_found(ev, id),
            code: Some("NOT_FOUND".into()),
            ..RecordError::default()
        }],
        not_found: true,
    }
}

fn record_error(message: impl Into<String>, code: &str) -> RecordFailure {
    RecordFailure {
        errors: vec![RecordError {
            message: message.into(),
            code: Some(code.into()),
            ..RecordError::default()
        }],
        not_found: false,
    }
}

impl Ctx<'_> {
    /// Imports a document: each record created, updated or acted on. An atomic document of
    /// several records is first sent as a dry run, so that nothing is stored when any record
    /// would fail.
    pub(super) async fn import(
        &self,
        url_ev: &Evidence,
        records: Vec<Record<'_>>,
        atomic: bool,
        url_id: Option<&str>,
        dry_run: bool,
    ) -> (StatusCode, Reply) {
        let single = records.len() == 1;
        // Several records, or one whose filter may select several: all or nothing.
        if atomic && !dry_run && (records.len() > 1 || records.iter().any(|r| r.filter.is_some())) {
            let (status, mut r) = self.run(url_ev, &records, true, None, true).await;
            if status.is_client_error() || status.is_server_error() {
                // Nothing was stored: the records that passed the dry run are skipped.
                if let Reply::Import { stats, results, .. } = &mut r {
                    stats.skipped += stats.created + stats.updated + stats.deleted;
                    (stats.created, stats.updated, stats.deleted) = (0, 0, 0);
                    for o in results.iter_mut().filter(|o| o.errors.is_empty()) {
                        o.id = None;
                        o.reference = None;
                    }
                }
                return (status, r);
            }
        }
        self.run(url_ev, &records, atomic, url_id.filter(|_| single), dry_run)
            .await
    }

    async fn run(
        &self,
        url_ev: &Evidence,
        records: &[Record<'_>],
        atomic: bool,
        url_id: Option<&str>,
        dry_run: bool,
    ) -> (StatusCode, Reply) {
        let mut stats = Stats::default();
        let mut results = Vec::new();
        let mut all_not_found = true;
        let mut message = None;
        let mut backend_error = None;
        let mut out_of_time = false;
        // The ids the records so far name (or create by code).
        let mut named = std::collections::HashSet::new();
        for (i, rec) in records.iter().enumerate() {
            if !out_of_time && Instant::now() >= self.times.stop_starting {
                out_of_time = true;
                message = Some(format!(
                    "Časový limit požadavku vypršel: záznamy od {}. nebyly zpracovány (skipped); pošlete je znovu.",
                    i + 1
                ));
            }
            if out_of_time || backend_error.is_some() || (atomic && stats.failed > 0) {
                stats.skipped += 1;
                continue;
            }
            let ev = if rec.evidence == url_ev.plan.name {
                url_ev
            } else {
                match self.company.evidences.get(&rec.evidence) {
                    Some(e) => e,
                    None => {
                        stats.failed += 1;
                        all_not_found = false;
                        let m = format!("Evidence '{}' neexistuje.", rec.evidence);
                        message.get_or_insert_with(|| m.clone());
                        results.push(Outcome {
                            errors: record_error(m, "UNKNOWN_EVIDENCE").errors,
                            ..Outcome::default()
                        });
                        continue;
                    }
                }
            };
            let mut ids = rec.ids.clone();
            let has_modes = rec.create != Mode::Ok || rec.update != Mode::Ok;
            let mismatch = match url_id {
                Some(_) if !std::ptr::eq(ev, url_ev) => Some(format!(
                    "Záznam evidence '{}' nelze poslat na adresu záznamu evidence '{}'.",
                    ev.plan.name, url_ev.plan.name
                )),
                Some(id) if ids.is_empty() => {
                    ids.push(id.to_string());
                    None
                }
                // A body naming another record than the URL: which one was meant is not known.
                Some(id) if !ids.iter().any(|i| i == id) => Some(format!(
                    "Identifikátor v URL ({id}) se neshoduje s identifikátorem záznamu ({}).",
                    ids.join(", ")
                )),
                _ => None,
            };
            let request_id = ids.first().cloned();
            // What this record names (its ids, and the code it creates), of its evidence.
            let names: Vec<(&str, String)> = ids
                .iter()
                .cloned()
                .chain(ev.plan.code_field.as_ref().and_then(|c| {
                    rec.fields
                        .iter()
                        .find(|(k, _)| k == c)
                        .map(|(_, v)| format!("code:{}", v.text().trim()))
                }))
                .map(|n| (ev.plan.name.as_str(), n))
                .collect();
            let refused = match mismatch.or_else(|| ids.iter().find_map(|id| winstrom::check_id(id).err())) {
                Some(reason) => Some((reason, "INVALID_ID")),
                // A dry run (an atomic document's first pass) does not see what earlier
                // records would do: whether this one exists then is not known.
                None if dry_run && has_modes => names
                    .iter()
                    .find(|n| named.contains(*n))
                    .map(|(_, id)| {
                        (
                            format!(
                                "Záznam '{id}' jmenuje už dřívější záznam dokumentu: atributy create a update u něj nelze vyhodnotit předem (pošlete jej v dalším dokumentu)."
                            ),
                            "NOT_SUPPORTED",
                        )
                    }),
                None => None,
            };
            if let Some((reason, code)) = refused {
                stats.failed += 1;
                all_not_found = false;
                message.get_or_insert_with(|| reason.clone());
                results.push(Outcome {
                    request_id,
                    errors: record_error(reason, code).errors,
                    ..Outcome::default()
                });
                continue;
            }
            // A record whose backend calls (a filter's search, its creates, updates or actions)
            // have not ended at 95% of the request's time is given up, so that what was done
            // reaches the client.
            let record = self.record(ev, rec, &ids, i + 1, dry_run, &mut results, &mut stats);
            let cut_off = StepError::Backend(Error::CutOff {
                limit_ms: self.times.limit_ms,
            });
            let done = tokio::time::timeout_at(self.times.cut_off.into(), record).await;
            match done.unwrap_or(Err(cut_off)) {
                Ok(()) => named.extend(names),
                Err(StepError::Record(f)) => {
                    stats.failed += 1;
                    all_not_found &= f.not_found;
                    message.get_or_insert_with(|| f.errors[0].message.clone());
                    results.push(Outcome {
                        request_id,
                        errors: f.errors,
                        ..Outcome::default()
                    });
                }
                Err(StepError::Backend(e)) => {
                    stats.failed += 1;
                    let m = backend_message(&e);
                    message = Some(m.clone());
                    results.push(Outcome {
                        request_id,
                        errors: vec![RecordError {
                            message: m,
                            code: Some(e.code().to_string()),
                            ..RecordError::default()
                        }],
                        ..Outcome::default()
                    });
                    backend_error = Some(e);
                }
            }
        }
        let status = if let Some(e) = &backend_error {
            status_of(e)
        } else if out_of_time {
            StatusCode::GATEWAY_TIMEOUT
        } else if stats.failed > 0 && all_not_found {
            StatusCode::NOT_FOUND
        } else if stats.failed > 0 {
            StatusCode::BAD_REQUEST
        } else if stats.created > 0 && !dry_run {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        (
            status,
            Reply::Import {
                success: stats.failed == 0 && !out_of_time,
                stats,
                results,
                message: if stats.failed > 0 || out_of_time {
                    message
                } else {
                    None
                },
            },
        )
    }

    /// One record: an action (on its id, or on every record its filter selects), an update
    /// (by id, or of every record its filter selects), or a create.
    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        ev: &Evidence,
        rec: &Record<'_>,
        ids: &[String],
        index: usize,
        dry_run: bool,
        results: &mut Vec<Outcome>,
        stats: &mut Stats,
    ) -> Result<(), StepError> {
        let fields = typed_fields(ev, rec, index)?;
        if rec.action.is_some() && (rec.create != Mode::Ok || rec.update != Mode::Ok) {
            return Err(record_error(
                format!("Atributy 'create' a 'update' nelze použít spolu s akcí [{index}]"),
                "INVALID_ATTRIBUTE",
            )
            .into());
        }
        let route = match &rec.action {
            Some(a) => Some(ev.actions.get(a).ok_or_else(|| {
                let allowed: Vec<&str> = ev.actions.keys().map(String::as_str).collect();
                let mut f = record_error(
                    format!(
                        "Atribut 'action' obsahuje špatnou hodnotu. Pro daný objekt smí obsahovat jen: [{}] [{index}]",
                        allowed.join(", ")
                    ),
                    "INVALID_ACTION",
                );
                f.errors[0].for_ = Some("action".into());
                f.errors[0].value = Some(a.clone());
                StepError::Record(f)
            })?),
            None => None,
        };
        // The records this one applies to.
        let targets: Vec<(String, bool)> = match (&rec.filter, ids.first()) {
            (Some(text), _) => {
                let filter = self.filter_json(ev, text).map_err(|f| {
                    let mut e = record_error(f.message, "INVALID_FILTER");
                    e.errors[0].for_ = Some("filter".into());
                    e.errors[0].value = Some(text.clone());
                    StepError::Record(e)
                })?;
                let limit = self.w.max_matches as i64 + 1;
                let (rows, _) = match self.search(ev, &filter, 0, limit, false, &[]).await {
                    Ok(r) => r,
                    // The backend could not apply the filter: the record's error, not an outage.
                    Err(e @ Error::BackendRefused(_)) if e.party() == Party::Caller => {
                        let Error::BackendRefused(r) = e else {
                            unreachable!()
                        };
                        let mut e = record_error(r.message, "INVALID_FILTER");
                        e.errors[0].for_ = Some("filter".into());
                        e.errors[0].value = Some(text.clone());
                        return Err(e.into());
                    }
                    Err(e) => return Err(StepError::Backend(e)),
                };
                if rows.len() > self.w.max_matches {
                    return Err(record_error(
                        format!(
                            "Filtr vybral více než {} záznamů; zužte jej.",
                            self.w.max_matches
                        ),
                        "TOO_MANY_MATCHES",
                    )
                    .into());
                }
                rows.iter()
                    .filter_map(|r| r.get(id_backend(ev)).map(scalar))
                    .map(|id| (id, false))
                    .collect()
            }
            (None, Some(id)) => vec![(id.clone(), true)],
            (None, None) if route.is_some() => {
                return Err(record_error(
                    format!(
                        "Akce '{}' potřebuje id záznamu nebo filtr [{index}]",
                        rec.action.as_deref().unwrap_or("")
                    ),
                    "MISSING_ID",
                )
                .into());
            }
            (None, None) => {
                // A record without an id or filter is always a new one.
                match rec.create {
                    Mode::Ok => {}
                    Mode::Ignore => {
                        stats.skipped += 1;
                        results.push(Outcome::default());
                        return Ok(());
                    }
                    Mode::Fail => {
                        return Err(record_error(
                            format!(
                                "Záznam bez identifikátoru by byl založen, což create=\"fail\" nedovoluje [{index}]"
                            ),
                            "CREATE_REFUSED",
                        )
                        .into());
                    }
                }
                let create = allowed(ev.create.as_ref(), ev, "zakládat")?;
                let input = self.input(vec![
                    ("record", Val::Obj(fields)),
                    ("dry_run", Val::Bool(dry_run)),
                ]);
                let id = result_id(&self.call(ev, create, &input, "", index, rec).await?);
                stats.created += 1;
                results.push(Outcome {
                    reference: (!dry_run).then(|| self.reference(&ev.plan.name, &id)),
                    id: (!id.is_empty()).then_some(id),
                    ..Outcome::default()
                });
                return Ok(());
            }
        };
        for (id, given) in targets {
            let request_id = given.then(|| id.clone());
            let done = match route {
                Some(r) => {
                    let input = self.input(vec![
                        ("id", Val::Str(id.as_str().into())),
                        ("dry_run", Val::Bool(dry_run)),
                    ]);
                    let new_id = result_id(&self.call(ev, r, &input, &id, index, rec).await?);
                    let new_id = if new_id.is_empty() {
                        id.clone()
                    } else {
                        new_id
                    };
                    if rec.action.as_deref() == Some("delete") {
                        Done::Deleted(new_id)
                    } else {
                        Done::Updated(new_id)
                    }
                }
                // A record asked to be left alone or to fail when it exists: read first
                // (every match of a filter exists).
                None if rec.update != Mode::Ok => {
                    let existing = if given {
                        self.exists(ev, &id, index, rec).await?
                    } else {
                        Some(id.clone())
                    };
                    match existing {
                        Some(_) if rec.update == Mode::Fail => {
                            return Err(record_error(
                                format!(
                                    "Záznam '{id}' již existuje, a update=\"fail\" nedovoluje jej změnit [{index}]"
                                ),
                                "UPDATE_REFUSED",
                            )
                            .into());
                        }
                        Some(real) => Done::Skipped(real),
                        None => {
                            self.update(ev, &id, fields.clone(), index, dry_run, rec, true)
                                .await?
                        }
                    }
                }
                None => {
                    self.update(ev, &id, fields.clone(), index, dry_run, rec, false)
                        .await?
                }
            };
            let id = match done {
                Done::Created(id) => {
                    stats.created += 1;
                    id
                }
                Done::Updated(id) => {
                    stats.updated += 1;
                    id
                }
                Done::Deleted(id) => {
                    stats.deleted += 1;
                    id
                }
                Done::Skipped(id) => {
                    stats.skipped += 1;
                    id
                }
            };
            // A dry run's create names no record yet.
            results.push(Outcome {
                reference: (!id.is_empty()).then(|| self.reference(&ev.plan.name, &id)),
                id: (!id.is_empty()).then_some(id),
                request_id,
                errors: Vec::new(),
            });
        }
        Ok(())
    }

    /// Updates a record by id (`missing`: it is known not to exist, so it is not asked for);
    /// a `code:` id that does not exist yet creates the record with that code, as Flexi does.
    #[allow(clippy::too_many_arguments)]
    async fn update<'v>(
        &self,
        ev: &Evidence,
        id: &str,
        fields: Vec<(&'v str, Val<'v>)>,
        index: usize,
        dry_run: bool,
        rec: &Record<'_>,
        missing: bool,
    ) -> Result<Done, StepError> {
        let updated = if missing {
            Err(StepError::Record(not_found_failure(ev, id)))
        } else {
            let update = allowed(ev.update.as_ref(), ev, "měnit")?;
            let input = self.input(vec![
                ("id", Val::Str(id.into())),
                ("record", Val::Obj(fields.clone())),
                ("dry_run", Val::Bool(dry_run)),
            ]);
            self.call(ev, update, &input, id, index, rec)
                .await
                .map(|v| result_id(&v))
        };
        match updated {
            Ok(new_id) => Ok(Done::Updated(if new_id.is_empty() {
                id.to_string()
            } else {
                new_id
            })),
            // Not there, and to be left so (`create="ignore"`) or failed (`create="fail"`: its
            // "not found").
            Err(StepError::Record(f)) if f.not_found && rec.create == Mode::Ignore => {
                Ok(Done::Skipped(String::new()))
            }
            Err(StepError::Record(f)) if f.not_found && rec.create == Mode::Fail => {
                Err(StepError::Record(f))
            }
            Err(StepError::Record(f)) if f.not_found => {
                let (Some(code), Some(create), Some(code_field)) =
                    (id.strip_prefix("code:"), &ev.create, &ev.plan.code_field)
                else {
                    return Err(StepError::Record(f));
                };
                let def = ev
                    .plan
                    .fields
                    .iter()
                    .find(|d| &d.name == code_field)
                    .expect("validated");
                let mut fields = fields;
                fields.retain(|(k, _)| *k != def.backend.as_str());
                fields.push((def.backend.as_str(), Val::Str(code.into())));
                let input = self.input(vec![
                    ("record", Val::Obj(fields)),
                    ("dry_run", Val::Bool(dry_run)),
                ]);
                let new_id = result_id(&self.call(ev, create, &input, "", index, rec).await?);
                Ok(Done::Created(new_id))
            }
            Err(e) => Err(e),
        }
    }

    /// The id of the record `id` names, when it exists, read by the evidence's `get` route
    /// (which `update` modes other than `ok` need).
    async fn exists(
        &self,
        ev: &Evidence,
        id: &str,
        index: usize,
        rec: &Record<'_>,
    ) -> Result<Option<String>, StepError> {
        let Some(get) = &ev.get else {
            return Err(record_error(
                format!(
                    "Evidence '{}' neumožňuje číst jednotlivé záznamy, a tak nelze zjistit, zda záznam '{id}' existuje (update=\"ignore\" či \"fail\") [{index}]",
                    ev.plan.name
                ),
                "NOT_SUPPORTED",
            )
            .into());
        };
        let input = self.input(vec![("id", Val::Str(id.into()))]);
        match self.call(ev, get, &input, id, index, rec).await {
            Ok(v) => Ok(v.get("row").filter(|r| !r.is_null()).map(|row| {
                row.get(id_backend(ev))
                    .map(scalar)
                    .filter(|i| !i.is_empty())
                    .unwrap_or_else(|| id.to_string())
            })),
            Err(StepError::Record(f)) if f.not_found => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Calls a route; its result ([`result_id`] names the record a create, update or action
    /// result names). Refusals become the record's errors (a 404 is "not found"), other
    /// failures stop the request.
    async fn call(
        &self,
        ev: &Evidence,
        route: &Route,
        input: &Val<'_>,
        id: &str,
        index: usize,
        rec: &Record<'_>,
    ) -> Result<serde_json::Value, StepError> {
        match route.invoke(input).await {
            Ok(v) => Ok(v),
            Err(Error::BackendRefused(r)) if r.status == 404 => {
                Err(StepError::Record(not_found_failure(ev, id)))
            }
            Err(e @ Error::BackendRefused(_)) if e.party() == Party::Caller => {
                let Error::BackendRefused(r) = e else {
                    unreachable!()
                };
                let path = |f: &str| format!("{}[{index}]/{f}", ev.plan.name);
                let errors = if r.fields.is_empty() {
                    vec![RecordError {
                        message: r.message.clone(),
                        path: Some(format!("{}[{index}]", ev.plan.name)),
                        code: Some(r.code.to_ascii_uppercase()),
                        ..RecordError::default()
                    }]
                } else {
                    r.fields
                        .iter()
                        .map(|f| {
                            let name = flexi_name(ev, &f.field);
                            RecordError {
                                message: f.message.clone(),
                                value: rec
                                    .fields
                                    .iter()
                                    .find(|(k, _)| *k == name)
                                    .map(|(_, v)| v.text()),
                                path: Some(path(&name)),
                                for_: Some(name),
                                code: Some(if f.code.is_empty() {
                                    r.code.to_ascii_uppercase()
                                } else {
                                    f.code.to_ascii_uppercase()
                                }),
                            }
                        })
                        .collect()
                };
                Err(StepError::Record(RecordFailure {
                    errors,
                    not_found: false,
                }))
            }
            // Other mistakes in what the caller sent (an input too large for the backend).
            Err(e) if e.party() == Party::Caller => {
                Err(record_error(e.message(crate::error::Lang::En), e.code()).into())
            }
            Err(e) => Err(StepError::Backend(e)),
        }
    }
}
/// A backend field name (possibly with a sub-path like `components[0].item`) as Flexi's name.
fn flexi_name(ev: &Evidence, backend: &str) -> String {
    let head = backend.split(['.', '[']).next().unwrap_or(backend);
    ev.plan
        .fields
        .iter()
        .find(|f| f.backend == head)
        .map_or_else(|| backend.to_string(), |f| f.name.clone())
}

/// A record's properties typed by the evidence and named as the backend names them.
fn typed_fields<'e, 'r>(
    ev: &'e Evidence,
    rec: &'r Record<'r>,
    index: usize,
) -> Result<Vec<(&'e str, Val<'r>)>, RecordFailure>
where
    'e: 'r,
{
    let mut out = Vec::with_capacity(rec.fields.len());
    let mut errors = Vec::new();
    for (name, raw) in &rec.fields {
        let Some(def) = ev.plan.fields.iter().find(|f| f.name == *name) else {
            errors.push(RecordError {
                message: format!("Neznámá vlastnost '{name}' evidence '{}'.", ev.plan.name),
                for_: Some(name.clone()),
                path: Some(format!("{}[{index}]/{name}", ev.plan.name)),
                value: Some(raw.text()),
                code: Some("UNKNOWN_PROPERTY".into()),
            });
            continue;
        };
        if def.read_only || def.name == "id" {
            continue;
        }
        match typed(def.ty, raw) {
            Ok(v) => out.push((def.backend.as_str(), v)),
            Err(expected) => errors.push(RecordError {
                message: format!(
                    "Hodnota '{}' vlastnosti '{name}' není {expected}.",
                    raw.text()
                ),
                for_: Some(name.clone()),
                path: Some(format!("{}[{index}]/{name}", ev.plan.name)),
                value: Some(raw.text()),
                code: Some("INVALID_VALUE".into()),
            }),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(RecordFailure {
            errors,
            not_found: false,
        })
    }
}

fn typed<'r>(ty: FieldType, raw: &'r RawValue<'r>) -> Result<Val<'r>, &'static str> {
    if *raw == RawValue::Null {
        return Ok(Val::Null);
    }
    let text: std::borrow::Cow<'r, str> = match raw {
        RawValue::Text(t) => std::borrow::Cow::Borrowed(t.as_ref()),
        RawValue::Number(n) => std::borrow::Cow::Borrowed(n.as_str()),
        RawValue::Bool(b) => std::borrow::Cow::Borrowed(if *b { "true" } else { "false" }),
        RawValue::Null => unreachable!(),
    };
    let t = text.trim();
    Ok(match ty {
        FieldType::String => Val::Str(text),
        FieldType::Int => Val::Int(t.parse().map_err(|_| "celé číslo")?),
        FieldType::Decimal => Val::Num(
            crate::protocol::xml::normalize_decimal(t)
                .ok_or("číslo")?
                .to_string()
                .into(),
        ),
        FieldType::Bool => Val::Bool(match t {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => return Err("true nebo false"),
        }),
        FieldType::Date => {
            chrono::NaiveDate::parse_from_str(t.get(..10).unwrap_or(t), "%Y-%m-%d")
                .map_err(|_| "datum (RRRR-MM-DD)")?;
            Val::Str(t.to_string().into())
        }
    })
}

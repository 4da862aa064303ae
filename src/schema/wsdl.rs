//! Loads a WSDL 1.1 document, its inline XSD and the local XSD files it imports or includes,
//! into the typed [`Schema`](super::Schema) and the list of operations.
//!
//! The loader runs once at start-up, so it uses a read-only DOM (roxmltree, DTDs refused)
//! rather than the streaming parser of the request path. QName references (`type="tns:X"`)
//! are resolved against the namespaces in scope at the referring node.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use roxmltree::{Document, Node, ParsingOptions};

use super::{ComplexType, ElementDecl, Schema, SimpleKind, SimpleType, TypeDef, TypeId};

pub const XSD_NS: &str = "http://www.w3.org/2001/XMLSchema";
const WSDL_NS: &str = "http://schemas.xmlsoap.org/wsdl/";
const SOAP11_BINDING_NS: &str = "http://schemas.xmlsoap.org/wsdl/soap/";
const SOAP12_BINDING_NS: &str = "http://schemas.xmlsoap.org/wsdl/soap12/";

#[derive(Debug, thiserror::Error)]
#[error("{file}: {reason}")]
pub struct WsdlError {
    pub file: String,
    pub reason: String,
}

fn werr(file: &Path, reason: impl Into<String>) -> WsdlError {
    WsdlError {
        file: file.display().to_string(),
        reason: reason.into(),
    }
}

/// One operation of the service, with the body elements of its request and response.
#[derive(Debug, Clone)]
pub struct Operation {
    pub name: String,
    /// SOAPAction values the bindings declare for it (empty strings left out).
    pub soap_actions: Vec<String>,
    pub input: ElementDecl,
    pub output: ElementDecl,
    pub documentation: String,
}

/// A source file of the description, kept to serve it back with rewritten addresses.
#[derive(Debug, Clone)]
struct SourceFile {
    text: String,
    /// Name under which it is served (`?xsd=<name>`); the WSDL itself has index 0.
    serve_name: String,
    /// Value ranges of `soap:address/@location` attributes.
    addresses: Vec<Range<usize>>,
    /// Value ranges of `schemaLocation` attributes and the file they point at.
    locations: Vec<(Range<usize>, usize)>,
}

#[derive(Debug, Clone)]
pub struct ServiceDescription {
    pub name: String,
    pub target_namespace: String,
    pub schema: Schema,
    pub operations: Vec<Operation>,
    files: Vec<SourceFile>,
}

impl ServiceDescription {
    /// Loads a WSDL and the local schema files it imports from the file system.
    pub fn load(path: &Path) -> Result<ServiceDescription, WsdlError> {
        Self::load_from(path, &|p| std::fs::read_to_string(p))
    }

    /// Loads a WSDL and the local schema files it imports, each read with `read`.
    pub fn load_from(
        path: &Path,
        read: &dyn Fn(&Path) -> std::io::Result<String>,
    ) -> Result<ServiceDescription, WsdlError> {
        let files = discover(path, read)?;
        let texts: Vec<&str> = files.iter().map(|(_, f)| f.text.as_str()).collect();
        let docs = texts
            .iter()
            .zip(&files)
            .map(|(t, (p, _))| parse(p, t))
            .collect::<Result<Vec<_>, _>>()?;
        let paths: Vec<&Path> = files.iter().map(|(p, _)| p.as_path()).collect();
        let mut b = Builder::new(&docs, &paths)?;
        let (name, target_namespace, operations) = b.operations()?;
        let schema = b.schema;
        Ok(ServiceDescription {
            name,
            target_namespace,
            schema,
            operations,
            files: files.into_iter().map(|(_, f)| f).collect(),
        })
    }

    /// Finds the operation whose request body element is `{namespace}local`.
    pub fn operation_for_element(&self, namespace: &str, local: &str) -> Option<&Operation> {
        self.operations.iter().find(|o| {
            o.input.name == local && o.input.namespace.as_deref().unwrap_or("") == namespace
        })
    }

    pub fn operation(&self, name: &str) -> Option<&Operation> {
        self.operations.iter().find(|o| o.name == name)
    }

    /// The WSDL as served at `<endpoint>?wsdl`: `soap:address` points at `endpoint` and
    /// schema locations at `<endpoint>?xsd=<name>`.
    pub fn render_wsdl(&self, endpoint: &str) -> String {
        self.render(0, endpoint)
    }

    /// An imported or included schema file, served at `<endpoint>?xsd=<name>`.
    pub fn render_xsd(&self, name: &str, endpoint: &str) -> Option<String> {
        let idx = self
            .files
            .iter()
            .skip(1)
            .position(|f| f.serve_name == name)?;
        Some(self.render(idx + 1, endpoint))
    }

    fn render(&self, idx: usize, endpoint: &str) -> String {
        let f = &self.files[idx];
        let mut edits: Vec<(Range<usize>, String)> = f
            .addresses
            .iter()
            .map(|r| (r.clone(), escape_attr(endpoint)))
            .collect();
        for (r, target) in &f.locations {
            let mut url = format!("{endpoint}?xsd=");
            crate::percent::encode_into(&mut url, &self.files[*target].serve_name);
            edits.push((r.clone(), escape_attr(&url)));
        }
        edits.sort_by_key(|(r, _)| std::cmp::Reverse(r.start));
        let mut out = f.text.clone();
        for (r, s) in edits {
            out.replace_range(r, &s);
        }
        out
    }
}

fn escape_attr(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

fn parse<'i>(path: &Path, text: &'i str) -> Result<Document<'i>, WsdlError> {
    let opts = ParsingOptions {
        allow_dtd: false,
        ..ParsingOptions::default()
    };
    Document::parse_with_options(text, opts).map_err(|e| werr(path, format!("not valid XML: {e}")))
}

/// Reads the WSDL and, transitively, every local schema file it imports or includes.
fn discover(
    wsdl: &Path,
    read: &dyn Fn(&Path) -> std::io::Result<String>,
) -> Result<Vec<(PathBuf, SourceFile)>, WsdlError> {
    let mut files: Vec<(PathBuf, SourceFile)> = Vec::new();
    let mut index: HashMap<PathBuf, usize> = HashMap::new();
    // (file index, schemaLocation value range, target path), resolved once all are loaded.
    let mut links: Vec<(usize, Range<usize>, PathBuf)> = Vec::new();
    let mut queue = vec![wsdl.to_path_buf()];
    while let Some(path) = queue.pop() {
        let canonical = lexical(&path);
        if index.contains_key(&canonical) {
            continue;
        }
        let text = read(&path).map_err(|e| werr(&path, format!("cannot read: {e}")))?;
        let my_idx = files.len();
        index.insert(canonical, my_idx);
        let base = path.parent().unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| format!("schema{my_idx}.xsd"));
        let serve_name = if files.iter().any(|(_, f)| f.serve_name == name) {
            format!("{my_idx}-{name}")
        } else {
            name
        };
        let mut addresses = Vec::new();
        {
            let doc = parse(&path, &text)?;
            for n in doc.descendants().filter(|n| n.is_element()) {
                let ns = n.tag_name().namespace().unwrap_or("");
                let local = n.tag_name().name();
                if local == "address" && (ns == SOAP11_BINDING_NS || ns == SOAP12_BINDING_NS) {
                    if let Some(a) = n.attribute_node("location") {
                        addresses.push(a.range_value());
                    }
                } else if ns == XSD_NS && (local == "import" || local == "include") {
                    if let Some(a) = n.attribute_node("schemaLocation") {
                        let loc = a.value();
                        if loc.contains("://") {
                            return Err(werr(
                                &path,
                                format!(
                                    "schema '{loc}' is remote; soapbridge loads only local files: save it beside the WSDL and refer to it by a relative path"
                                ),
                            ));
                        }
                        let target = base.join(loc);
                        links.push((my_idx, a.range_value(), target.clone()));
                        queue.push(target);
                    }
                } else if ns == WSDL_NS && local == "import" {
                    return Err(werr(
                        &path,
                        "wsdl:import is not supported; put the definitions in one WSDL and import schemas with xsd:import",
                    ));
                }
            }
        }
        files.push((
            path,
            SourceFile {
                text,
                serve_name,
                addresses,
                locations: Vec::new(),
            },
        ));
    }
    for (from, range, target) in links {
        let to = index[&lexical(&target)];
        files[from].1.locations.push((range, to));
    }
    Ok(files)
}

/// A path with `.` and `..` taken out, without asking the file system (two imports of one
/// file by different relative paths are one file).
fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

type Key = (String, String);

struct Builder<'a, 'i> {
    docs: &'a [Document<'i>],
    paths: &'a [&'a Path],
    elements: HashMap<Key, Node<'a, 'i>>,
    complex: HashMap<Key, Node<'a, 'i>>,
    simple: HashMap<Key, Node<'a, 'i>>,
    /// Target namespace given to schemas without one (chameleon includes).
    chameleon: HashMap<usize, String>,
    named: HashMap<Key, TypeId>,
    /// Anonymous types of global elements, by element name.
    element_types: HashMap<Key, TypeId>,
    schema: Schema,
}

fn xsd<'a, 'i>(n: Node<'a, 'i>, local: &str) -> bool {
    n.is_element() && n.tag_name().name() == local && n.tag_name().namespace() == Some(XSD_NS)
}

fn wsdl_el<'a, 'i>(n: Node<'a, 'i>, local: &str) -> bool {
    n.is_element() && n.tag_name().name() == local && n.tag_name().namespace() == Some(WSDL_NS)
}

fn xsd_children<'a, 'i>(n: Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    n.children()
        .filter(|c| c.is_element() && c.tag_name().namespace() == Some(XSD_NS))
}

fn local_of(qname: &str) -> &str {
    qname.rsplit_once(':').map_or(qname, |(_, l)| l)
}

impl<'a, 'i> Builder<'a, 'i> {
    fn new(docs: &'a [Document<'i>], paths: &'a [&'a Path]) -> Result<Self, WsdlError> {
        let mut b = Builder {
            docs,
            paths,
            elements: HashMap::new(),
            complex: HashMap::new(),
            simple: HashMap::new(),
            chameleon: HashMap::new(),
            named: HashMap::new(),
            element_types: HashMap::new(),
            schema: Schema::default(),
        };
        // Chameleon includes take the including schema's namespace.
        for (i, d) in docs.iter().enumerate() {
            for inc in d.descendants().filter(|n| xsd(*n, "include")) {
                let Some(schema) = inc.ancestors().find(|a| xsd(*a, "schema")) else {
                    continue;
                };
                let tns = schema
                    .attribute("targetNamespace")
                    .unwrap_or("")
                    .to_string();
                if let Some(loc) = inc.attribute("schemaLocation") {
                    let target = paths[i].parent().unwrap_or(Path::new(".")).join(loc);
                    if let Some(j) = paths
                        .iter()
                        .position(|p| p.canonicalize().ok() == target.canonicalize().ok())
                        && docs[j]
                            .root_element()
                            .attribute("targetNamespace")
                            .is_none()
                    {
                        b.chameleon.insert(j, tns);
                    }
                }
            }
        }
        for (i, d) in docs.iter().enumerate() {
            for schema in d.descendants().filter(|n| xsd(*n, "schema")) {
                let tns = b.tns_of_schema(i, schema);
                for top in xsd_children(schema) {
                    let Some(name) = top.attribute("name") else {
                        continue;
                    };
                    let key = (tns.clone(), name.to_string());
                    match top.tag_name().name() {
                        "element" => {
                            b.elements.insert(key, top);
                        }
                        "complexType" => {
                            b.complex.insert(key, top);
                        }
                        "simpleType" => {
                            b.simple.insert(key, top);
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(b)
    }

    fn doc_index(&self, n: Node<'a, 'i>) -> usize {
        self.docs
            .iter()
            .position(|d| std::ptr::eq(d, n.document()))
            .unwrap_or(0)
    }

    fn fail(&self, n: Node<'a, 'i>, reason: impl Into<String>) -> WsdlError {
        let d = self.doc_index(n);
        let pos = self.docs[d].text_pos_at(n.range().start);
        werr(
            self.paths[d],
            format!("line {}: {}", pos.row, reason.into()),
        )
    }

    fn tns_of_schema(&self, doc: usize, schema: Node<'a, 'i>) -> String {
        match schema.attribute("targetNamespace") {
            Some(t) => t.to_string(),
            None => self.chameleon.get(&doc).cloned().unwrap_or_default(),
        }
    }

    fn schema_of(&self, n: Node<'a, 'i>) -> Option<Node<'a, 'i>> {
        n.ancestors().find(|a| xsd(*a, "schema"))
    }

    fn tns_at(&self, n: Node<'a, 'i>) -> String {
        match self.schema_of(n) {
            Some(s) => self.tns_of_schema(self.doc_index(n), s),
            None => String::new(),
        }
    }

    fn resolve_qname(&self, n: Node<'a, 'i>, qname: &str) -> Result<Key, WsdlError> {
        let (prefix, local) = match qname.split_once(':') {
            Some((p, l)) => (Some(p), l),
            None => (None, qname),
        };
        let ns = match n.lookup_namespace_uri(prefix) {
            Some(ns) => ns.to_string(),
            None if prefix.is_none() => String::new(),
            None => {
                return Err(self.fail(
                    n,
                    format!(
                        "namespace prefix '{}' is not declared",
                        prefix.unwrap_or("")
                    ),
                ));
            }
        };
        Ok((ns, local.to_string()))
    }

    fn push(&mut self, t: TypeDef) -> TypeId {
        self.schema.types.push(t);
        self.schema.types.len() - 1
    }

    fn type_by_name(&mut self, at: Node<'a, 'i>, key: &Key) -> Result<TypeId, WsdlError> {
        if let Some(id) = self.named.get(key) {
            return Ok(*id);
        }
        if key.0 == XSD_NS {
            let kind = SimpleKind::builtin(&key.1).ok_or_else(|| {
                self.fail(
                    at,
                    format!("xs:{} is not a supported XSD built-in type", key.1),
                )
            })?;
            let id = self.push(TypeDef::Simple(SimpleType {
                name: format!("xs:{}", key.1),
                kind,
                enumeration: Vec::new(),
            }));
            self.named.insert(key.clone(), id);
            return Ok(id);
        }
        if let Some(node) = self.complex.get(key).copied() {
            // Placeholder first, so recursive types terminate.
            let id = self.push(TypeDef::Complex(ComplexType {
                name: key.1.clone(),
                children: Vec::new(),
                unordered: false,
            }));
            self.named.insert(key.clone(), id);
            let def = self.complex_type(node, &key.1)?;
            self.schema.types[id] = def;
            return Ok(id);
        }
        if let Some(node) = self.simple.get(key).copied() {
            let def = self.simple_type(node, &key.1)?;
            let id = self.push(def);
            self.named.insert(key.clone(), id);
            return Ok(id);
        }
        Err(self.fail(
            at,
            format!(
                "type '{{{}}}{}' is not defined in the WSDL or its schemas",
                key.0, key.1
            ),
        ))
    }

    fn simple_type(&mut self, node: Node<'a, 'i>, name: &str) -> Result<TypeDef, WsdlError> {
        let mut kind = SimpleKind::Other;
        let mut enumeration = Vec::new();
        if let Some(r) = xsd_children(node).find(|c| xsd(*c, "restriction")) {
            if let Some(base) = r.attribute("base") {
                let key = self.resolve_qname(r, base)?;
                let base_id = self.type_by_name(r, &key)?;
                if let TypeDef::Simple(s) = self.schema.get(base_id) {
                    kind = s.kind;
                }
            } else if let Some(inner) = xsd_children(r).find(|c| xsd(*c, "simpleType"))
                && let TypeDef::Simple(s) = self.simple_type(inner, name)?
            {
                kind = s.kind;
            }
            enumeration = xsd_children(r)
                .filter(|c| xsd(*c, "enumeration"))
                .filter_map(|c| c.attribute("value").map(str::to_string))
                .collect();
        }
        Ok(TypeDef::Simple(SimpleType {
            name: name.to_string(),
            kind,
            enumeration,
        }))
    }

    fn complex_type(&mut self, node: Node<'a, 'i>, name: &str) -> Result<TypeDef, WsdlError> {
        let mut children = Vec::new();
        let unordered = xsd_children(node).any(|c| c.tag_name().name() == "all");
        for c in xsd_children(node) {
            match c.tag_name().name() {
                "sequence" | "all" | "choice" => self.particles(c, &mut children, false, false)?,
                "complexContent" => {
                    for d in xsd_children(c) {
                        let ext = d.tag_name().name();
                        if ext != "extension" && ext != "restriction" {
                            continue;
                        }
                        if ext == "extension"
                            && let Some(base) = d.attribute("base")
                        {
                            let key = self.resolve_qname(d, base)?;
                            let id = self.type_by_name(d, &key)?;
                            match self.schema.get(id) {
                                TypeDef::Complex(bt) => children.extend(bt.children.clone()),
                                TypeDef::Simple(_) => {
                                    return Err(self.fail(
                                        d,
                                        format!("complexContent extends simple type '{base}'"),
                                    ));
                                }
                            }
                        }
                        for p in xsd_children(d) {
                            if matches!(p.tag_name().name(), "sequence" | "all" | "choice") {
                                self.particles(p, &mut children, false, false)?;
                            }
                        }
                    }
                }
                "simpleContent" => {
                    // Text with attributes: attributes are not mapped, the text keeps its type.
                    if let Some(d) = xsd_children(c).next()
                        && let Some(base) = d.attribute("base")
                    {
                        let key = self.resolve_qname(d, base)?;
                        let id = self.type_by_name(d, &key)?;
                        return Ok(self.schema.get(id).clone());
                    }
                }
                "group" | "attributeGroup"
                    if c.attribute("ref").is_some() && c.tag_name().name() == "group" =>
                {
                    return Err(self.fail(c, "xs:group references are not supported"));
                }
                _ => {}
            }
        }
        Ok(TypeDef::Complex(ComplexType {
            name: name.to_string(),
            children,
            unordered,
        }))
    }

    fn particles(
        &mut self,
        node: Node<'a, 'i>,
        out: &mut Vec<ElementDecl>,
        optional: bool,
        repeated: bool,
    ) -> Result<(), WsdlError> {
        let (min, max) = occurs(node).map_err(|r| self.fail(node, r))?;
        let optional = optional || min == 0 || node.tag_name().name() == "choice";
        let repeated = repeated || max.is_none_or(|m| m > 1);
        if max.is_none_or(|m| m > 1)
            && xsd_children(node)
                .filter(|c| c.tag_name().name() != "annotation")
                .count()
                > 1
        {
            return Err(self.fail(
                node,
                "a repeated group (maxOccurs > 1 on a sequence or choice) with several particles is not supported: it has no JSON form that keeps its order; wrap the group in an element",
            ));
        }
        for c in xsd_children(node) {
            match c.tag_name().name() {
                "element" => {
                    let mut decl = self.element(c, false)?;
                    if optional {
                        decl.min_occurs = 0;
                    }
                    if repeated {
                        decl.max_occurs = None;
                    }
                    out.push(decl);
                }
                "sequence" | "choice" | "all" => self.particles(c, out, optional, repeated)?,
                "group" => return Err(self.fail(c, "xs:group references are not supported")),
                _ => {} // xs:any and annotations are not mapped
            }
        }
        Ok(())
    }

    /// An element declaration; `global` for top-level elements (always qualified).
    fn element(&mut self, node: Node<'a, 'i>, global: bool) -> Result<ElementDecl, WsdlError> {
        let (min, max) = if global {
            (1, Some(1))
        } else {
            occurs(node).map_err(|r| self.fail(node, r))?
        };
        if let Some(r) = node.attribute("ref") {
            let key = self.resolve_qname(node, r)?;
            let target = self.elements.get(&key).copied().ok_or_else(|| {
                self.fail(
                    node,
                    format!("element '{{{}}}{}' is not defined", key.0, key.1),
                )
            })?;
            let mut decl = self.element(target, true)?;
            decl.min_occurs = min;
            decl.max_occurs = max;
            return Ok(decl);
        }
        let name = node
            .attribute("name")
            .ok_or_else(|| self.fail(node, "element without name or ref"))?
            .to_string();
        let ty = if let Some(t) = node.attribute("type") {
            let key = self.resolve_qname(node, t)?;
            self.type_by_name(node, &key)?
        } else if let Some(ct) = xsd_children(node).find(|c| xsd(*c, "complexType")) {
            // A global element's anonymous type may refer back to the element (trees): the
            // type id is recorded before its children are read, so the reference finds it.
            let global_key = global.then(|| (self.tns_at(node), name.clone()));
            if let Some(id) = global_key.as_ref().and_then(|k| self.element_types.get(k)) {
                *id
            } else {
                let id = self.push(TypeDef::Complex(ComplexType {
                    name: name.clone(),
                    children: Vec::new(),
                    unordered: false,
                }));
                if let Some(k) = global_key {
                    self.element_types.insert(k, id);
                }
                let def = self.complex_type(ct, &name)?;
                self.schema.types[id] = def;
                id
            }
        } else if let Some(st) = xsd_children(node).find(|c| xsd(*c, "simpleType")) {
            let def = self.simple_type(st, &name)?;
            self.push(def)
        } else {
            self.type_by_name(node, &(XSD_NS.to_string(), "anyType".to_string()))?
        };
        let qualified = global
            || match node.attribute("form") {
                Some(f) => f == "qualified",
                None => {
                    self.schema_of(node)
                        .and_then(|s| s.attribute("elementFormDefault"))
                        == Some("qualified")
                }
            };
        Ok(ElementDecl {
            name,
            namespace: qualified.then(|| self.tns_at(node)),
            min_occurs: min,
            max_occurs: max,
            nillable: matches!(node.attribute("nillable"), Some("true" | "1")),
            ty,
        })
    }

    /// Reads the WSDL definitions: the service name, target namespace and operations.
    fn operations(&mut self) -> Result<(String, String, Vec<Operation>), WsdlError> {
        let defs = self.docs[0].root_element();
        if !wsdl_el(defs, "definitions") {
            return Err(werr(
                self.paths[0],
                "the root element is not wsdl:definitions (WSDL 1.1)",
            ));
        }
        let tns = defs.attribute("targetNamespace").unwrap_or("").to_string();
        let messages: HashMap<&str, Node<'_, '_>> = defs
            .children()
            .filter(|n| wsdl_el(*n, "message"))
            .filter_map(|n| n.attribute("name").map(|a| (a, n)))
            .collect();
        let port_types: HashMap<&str, Node<'_, '_>> = defs
            .children()
            .filter(|n| wsdl_el(*n, "portType"))
            .filter_map(|n| n.attribute("name").map(|a| (a, n)))
            .collect();
        let soap_bindings: Vec<Node<'_, '_>> = defs
            .children()
            .filter(|n| wsdl_el(*n, "binding"))
            .filter(|b| {
                b.children().any(|c| {
                    c.tag_name().name() == "binding"
                        && matches!(
                            c.tag_name().namespace(),
                            Some(SOAP11_BINDING_NS | SOAP12_BINDING_NS)
                        )
                })
            })
            .collect();
        let Some(binding) = soap_bindings.first().copied() else {
            return Err(werr(
                self.paths[0],
                "no SOAP binding (soap or soap12) is defined",
            ));
        };
        let soap_of = |n: Node<'a, 'i>, local: &str| {
            n.children().find(|c| {
                c.tag_name().name() == local
                    && matches!(
                        c.tag_name().namespace(),
                        Some(SOAP11_BINDING_NS | SOAP12_BINDING_NS)
                    )
            })
        };
        let default_style = soap_of(binding, "binding")
            .and_then(|b| b.attribute("style"))
            .unwrap_or("document")
            .to_string();
        let pt_name = local_of(binding.attribute("type").unwrap_or(""));
        let pt = *port_types
            .get(pt_name)
            .ok_or_else(|| self.fail(binding, format!("portType '{pt_name}' is not defined")))?;
        let service_name = defs
            .children()
            .find(|n| wsdl_el(*n, "service"))
            .and_then(|s| s.attribute("name"))
            .or_else(|| defs.attribute("name"))
            .unwrap_or("Service")
            .to_string();

        let mut ops = Vec::new();
        for op in pt.children().filter(|n| wsdl_el(*n, "operation")) {
            let name = op.attribute("name").unwrap_or("").to_string();
            let documentation = op
                .children()
                .find(|n| wsdl_el(*n, "documentation"))
                .and_then(|d| d.text())
                .unwrap_or("")
                .trim()
                .to_string();
            let bop = binding
                .children()
                .find(|n| wsdl_el(*n, "operation") && n.attribute("name") == Some(&name))
                .ok_or_else(|| {
                    self.fail(op, format!("operation '{name}' has no binding operation"))
                })?;
            let style = soap_of(bop, "operation")
                .and_then(|o| o.attribute("style"))
                .unwrap_or(&default_style)
                .to_string();
            let mut soap_actions: Vec<String> = Vec::new();
            for b in &soap_bindings {
                if let Some(a) = b
                    .children()
                    .find(|n| wsdl_el(*n, "operation") && n.attribute("name") == Some(&name))
                    .and_then(|o| soap_of(o, "operation"))
                    .and_then(|o| o.attribute("soapAction"))
                    && !a.is_empty()
                    && !soap_actions.iter().any(|x| x == a)
                {
                    soap_actions.push(a.to_string());
                }
            }
            let mut io = Vec::new();
            for dir in ["input", "output"] {
                let msg_ref = op
                    .children()
                    .find(|n| wsdl_el(*n, dir))
                    .and_then(|n| n.attribute("message"))
                    .ok_or_else(|| {
                        self.fail(op, format!("operation '{name}' has no {dir} message"))
                    })?;
                let msg = *messages
                    .get(local_of(msg_ref))
                    .ok_or_else(|| self.fail(op, format!("message '{msg_ref}' is not defined")))?;
                let body = bop
                    .children()
                    .find(|n| wsdl_el(*n, dir))
                    .and_then(|n| soap_of(n, "body"));
                if body.and_then(|b| b.attribute("use")) == Some("encoded") {
                    return Err(self.fail(
                        bop,
                        format!("operation '{name}' uses SOAP encoding (use=\"encoded\"); only literal is supported"),
                    ));
                }
                let parts: Vec<Node<'_, '_>> =
                    msg.children().filter(|n| wsdl_el(*n, "part")).collect();
                let decl = if style == "rpc" {
                    let ns = body
                        .and_then(|b| b.attribute("namespace"))
                        .unwrap_or(&tns)
                        .to_string();
                    let wrapper = if dir == "input" {
                        name.clone()
                    } else {
                        format!("{name}Response")
                    };
                    let mut children = Vec::new();
                    for p in parts {
                        let pname = p.attribute("name").unwrap_or("").to_string();
                        let ty = if let Some(t) = p.attribute("type") {
                            let key = self.resolve_qname(p, t)?;
                            self.type_by_name(p, &key)?
                        } else if let Some(e) = p.attribute("element") {
                            let key = self.resolve_qname(p, e)?;
                            let el = *self.elements.get(&key).ok_or_else(|| {
                                self.fail(p, format!("element '{e}' is not defined"))
                            })?;
                            self.element(el, true)?.ty
                        } else {
                            return Err(self.fail(p, "part without type or element"));
                        };
                        children.push(ElementDecl {
                            name: pname,
                            namespace: None,
                            min_occurs: 1,
                            max_occurs: Some(1),
                            nillable: true,
                            ty,
                        });
                    }
                    let ty = self.push(TypeDef::Complex(ComplexType {
                        name: wrapper.clone(),
                        children,
                        unordered: false,
                    }));
                    ElementDecl {
                        name: wrapper,
                        namespace: Some(ns),
                        min_occurs: 1,
                        max_occurs: Some(1),
                        nillable: false,
                        ty,
                    }
                } else {
                    let [part] = parts.as_slice() else {
                        return Err(self.fail(
                            msg,
                            format!(
                                "document-style message '{}' must have exactly one part (it has {})",
                                msg.attribute("name").unwrap_or(""),
                                parts.len()
                            ),
                        ));
                    };
                    let e = part.attribute("element").ok_or_else(|| {
                        self.fail(*part, "a document-style part must name an element")
                    })?;
                    let key = self.resolve_qname(*part, e)?;
                    let el = *self
                        .elements
                        .get(&key)
                        .ok_or_else(|| self.fail(*part, format!("element '{e}' is not defined")))?;
                    self.element(el, true)?
                };
                io.push(decl);
            }
            let output = io.pop().expect("two entries");
            let input = io.pop().expect("two entries");
            ops.push(Operation {
                name,
                soap_actions,
                input,
                output,
                documentation,
            });
        }
        Ok((service_name, tns, ops))
    }
}

fn occurs(n: Node<'_, '_>) -> Result<(u32, Option<u32>), String> {
    let min = match n.attribute("minOccurs") {
        None => 1,
        Some(v) => v
            .parse()
            .map_err(|_| format!("minOccurs '{v}' is not a number"))?,
    };
    let max = match n.attribute("maxOccurs") {
        None => Some(1),
        Some("unbounded") => None,
        Some(v) => Some(
            v.parse()
                .map_err(|_| format!("maxOccurs '{v}' is not a number or 'unbounded'"))?,
        ),
    };
    Ok((min, max))
}

//! Redfish error responses: an `error` object whose `@Message.ExtendedInfo`
//! entries come from DMTF's Base message registry (Base.1.11.0; message
//! texts, severities and resolutions copied from the registry).

use serde_json::{json, Value};

/// The Base registry version our MessageIds name.
pub const BASE: &str = "Base.1.11.0";

/// A failed request: status plus a Base registry message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{status} {id}: {message}")]
pub struct RedfishError {
    /// HTTP status.
    pub status: u16,
    /// Base registry message key (`ResourceNotFound`).
    pub id: &'static str,
    /// The message with its arguments filled in.
    pub message: String,
    /// The arguments.
    pub args: Vec<String>,
    severity: &'static str,
    resolution: &'static str,
    /// Why, in our words, when the registry text alone does not say (shown
    /// after it in the error's `message`).
    pub detail: Option<Box<str>>,
}

/// (key, text with %N, severity, resolution) from Base.1.11.0.
const MESSAGES: &[(&str, &str, &str, &str)] = &[
    ("GeneralError", "A general error has occurred.  See Resolution for information on how to resolve the error, or @Message.ExtendedInfo if Resolution is not provided.", "Critical", "None."),
    ("ResourceNotFound", "The requested resource of type %1 named '%2' was not found.", "Critical", "Provide a valid resource identifier and resubmit the request."),
    ("PropertyUnknown", "The property %1 is not in the list of valid properties for the resource.", "Warning", "Remove the unknown property from the request body and resubmit the request if the operation failed."),
    ("PropertyValueTypeError", "The value '%1' for the property %2 is of a different type than the property can accept.", "Warning", "Correct the value for the property in the request body and resubmit the request if the operation failed."),
    ("PropertyValueNotInList", "The value '%1' for the property %2 is not in the list of acceptable values.", "Warning", "Choose a value from the enumeration list that the implementation can support and resubmit the request if the operation failed."),
    ("PropertyNotWritable", "The property %1 is a read only property and cannot be assigned a value.", "Warning", "Remove the property from the request body and resubmit the request if the operation failed."),
    ("PropertyMissing", "The property %1 is a required property and must be included in the request.", "Warning", "Ensure that the property is in the request body and has a valid value and resubmit the request if the operation failed."),
    ("ActionNotSupported", "The action %1 is not supported by the resource.", "Critical", "The action supplied cannot be resubmitted to the implementation.  Perhaps the action was invalid, the wrong resource was the target or the implementation documentation may be of assistance."),
    ("MalformedJSON", "The request body submitted was malformed JSON and could not be parsed by the receiving service.", "Critical", "Ensure that the request body is valid JSON and resubmit the request."),
    ("InsufficientPrivilege", "There are insufficient privileges for the account or credentials associated with the current session to perform the requested operation.", "Critical", "Either abandon the operation or change the associated access rights and resubmit the request if the operation failed."),
    ("NoValidSession", "There is no valid session established with the implementation.", "Critical", "Establish a session before attempting any operations."),
    ("ActionParameterMissing", "The action %1 requires the parameter %2 to be present in the request body.", "Critical", "Supply the action with the required parameter in the request body when the request is resubmitted."),
    ("ActionParameterUnknown", "The action %1 was submitted with the invalid parameter %2.", "Warning", "Correct the invalid parameter and resubmit the request if the operation failed."),
    ("ActionParameterValueNotInList", "The value '%1' for the parameter %2 in the action %3 is not in the list of acceptable values.", "Warning", "Choose a value from the enumeration list that the implementation can support and resubmit the request if the operation failed."),
    ("ActionParameterValueTypeError", "The value '%1' for the parameter %2 in the action %3 is of a different type than the parameter can accept.", "Warning", "Correct the value for the parameter in the request body and resubmit the request if the operation failed."),
    ("ActionParameterValueFormatError", "The value '%1' for the parameter %2 in the action %3 is of a different format than the parameter can accept.", "Warning", "Correct the value for the parameter in the request body and resubmit the request if the operation failed."),
    ("ActionParameterNotSupported", "The parameter %1 for the action %2 is not supported on the target resource.", "Warning", "Remove the parameter supplied and resubmit the request if the operation failed."),
    ("PreconditionFailed", "The ETag supplied did not match the ETag required to change this resource.", "Critical", "Try the operation again using the appropriate ETag."),
    ("ResourceInUse", "The change to the requested resource failed because the resource is in use or in transition.", "Warning", "Remove the condition and resubmit the request if the operation failed."),
    ("ResourceInStandby", "The request could not be performed because the resource is in standby.", "Critical", "Ensure that the resource is in the correct power state and resubmit the request."),
    ("QueryNotSupported", "Querying is not supported by the implementation.", "Warning", "Remove the query parameters and resubmit the request if the operation failed."),
    ("ResourceCannotBeDeleted", "The delete request failed because the resource requested cannot be deleted.", "Critical", "Do not attempt to delete a non-deletable resource."),
    ("SessionLimitExceeded", "The session establishment failed due to the number of simultaneous sessions exceeding the limit of the implementation.", "Critical", "Reduce the number of other sessions before trying to establish the session or increase the limit of simultaneous sessions, if supported."),
    ("ResourceAtUriUnauthorized", "While accessing the resource at '%1', the service received an authorization error '%2'.", "Critical", "Ensure that the appropriate access is provided for the service in order for it to access the URI."),
    ("NoOperation", "The request body submitted contain no data to act upon and no changes to the resource took place.", "Warning", "Add properties in the JSON object and resubmit the request."),
    ("Success", "The request completed successfully.", "OK", "None"),
    ("Created", "The resource has been created successfully.", "OK", "None."),
    ("ResourceAlreadyExists", "The requested resource of type %1 with the property %2 with the value '%3' already exists.", "Critical", "Do not repeat the create operation as the resource has already been created."),
    ("PropertyValueResourceConflict", "The property '%1' with the requested value of '%2' could not be written because the value conflicts with the state or configuration of the resource at '%3'.", "Warning", "No resolution is required."),
    ("PropertyValueFormatError", "The value '%1' for the property %2 is of a different format than the property can accept.", "Warning", "Correct the value for the property in the request body and resubmit the request if the operation failed."),
    ("StringValueTooLong", "The string '%1' exceeds the length limit %2.", "Warning", "Resubmit the request with an appropriate string length."),
    ("CreateLimitReachedForResource", "The create operation failed because the resource has reached the limit of possible resources.", "Critical", "Either delete resources and resubmit the request if the operation failed or do not resubmit the request."),
    ("AccountForSessionNoLongerExists", "The account for the current session has been removed, thus the current session has been removed as well.", "OK", "Attempt to connect with a valid account."),
];

impl RedfishError {
    /// The registry message `id` with `args`, answered with `status`.
    pub fn new(status: u16, id: &'static str, args: &[&str]) -> RedfishError {
        let (_, text, severity, resolution) = MESSAGES
            .iter()
            .find(|m| m.0 == id)
            .copied()
            .unwrap_or(MESSAGES[0]);
        let mut message = text.to_string();
        for (i, a) in args.iter().enumerate().rev() {
            message = message.replace(&format!("%{}", i + 1), a);
        }
        RedfishError {
            status,
            id,
            message,
            args: args.iter().map(|s| s.to_string()).collect(),
            severity,
            resolution,
            detail: None,
        }
    }

    /// The same error with our explanation added to the top-level message
    /// (the `@Message.ExtendedInfo` entry keeps the registry text).
    pub fn explain(mut self, why: impl Into<String>) -> RedfishError {
        self.detail = Some(why.into().into_boxed_str());
        self
    }

    /// A GeneralError carrying our own explanation in the resolution's place
    /// (for failures the registry has no message for, e.g. an image server
    /// refusing a connection).
    pub fn general(status: u16, detail: &str) -> RedfishError {
        let mut e = RedfishError::new(status, "GeneralError", &[]);
        e.message = detail.to_string();
        e
    }

    /// The `@Message.ExtendedInfo` entry.
    pub fn message_json(&self) -> Value {
        json!({
            "@odata.type": "#Message.v1_1_1.Message",
            "MessageId": format!("{BASE}.{}", self.id),
            "Message": self.message,
            "MessageArgs": self.args,
            "Severity": self.severity,
            "MessageSeverity": self.severity,
            "Resolution": self.resolution,
        })
    }

    /// The response body.
    pub fn body(&self) -> Value {
        json!({
            "error": {
                "code": format!("{BASE}.{}", self.id),
                "message": match &self.detail {
                    Some(d) => format!("{} {d}", self.message),
                    None => self.message.clone(),
                },
                "@Message.ExtendedInfo": [self.message_json()],
            }
        })
    }
}

/// Shorthands.
pub fn not_found(kind: &str, name: &str) -> RedfishError {
    RedfishError::new(404, "ResourceNotFound", &[kind, name])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_fill_the_registry_text() {
        let e = RedfishError::new(
            400,
            "ActionParameterValueNotInList",
            &["Nope", "ResetType", "ComputerSystem.Reset"],
        );
        assert_eq!(
            e.message,
            "The value 'Nope' for the parameter ResetType in the action ComputerSystem.Reset is not in the list of acceptable values."
        );
        let b = e.body();
        assert_eq!(
            b["error"]["@Message.ExtendedInfo"][0]["MessageId"],
            "Base.1.11.0.ActionParameterValueNotInList"
        );
    }
}

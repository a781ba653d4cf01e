//! The cluster handle: up, down, list, gc; ties spec, image, virt and ssh together.
